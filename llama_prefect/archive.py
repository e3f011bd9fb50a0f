"""One archive run: which videos still need work, and keeping each answer as it comes.

At the start, every video of the archive is keyed by its content (see
`llama_prefect.results`); videos whose result is already stored for this pipeline
version are taken from the store and not processed again. Each video the run answers
is stored the moment its answer arrives, so a run that is killed midway loses at most
the videos in flight, and the next run processes only what is missing. A progress
artifact counts the videos done, stored ones included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llama_prefect.report import ArchiveProgress
from llama_prefect.results import ResultStore, version_tag, video_key

logger = logging.getLogger(__name__)


class Archive:
    """The videos of one run and the results store that lets it resume.

    Args:
        videos: The archive's videos, in processing order.
        store: The results store, or None to keep no results (every video runs).
        progress: The progress artifact to advance.
        run_id: The flow run's id, written into each stored result.
    """

    def __init__(
        self,
        videos: Sequence[str],
        store: ResultStore | None,
        progress: ArchiveProgress | None = None,
        run_id: str | None = None,
    ) -> None:
        self.videos = list(videos)
        self.store = store
        self.run_id = run_id
        self.keys: dict[str, str] = {}
        self.reused: dict[str, dict[str, Any]] = {}
        if store is not None:
            removed = store.clean_partials()
            if removed:
                logger.info("removed %d partial results of a killed run", removed)
            for video in self.videos:
                key = self.keys[video] = video_key(video)
                found = store.get(key)
                if found is not None:
                    self.reused[video] = found
        self.progress = progress or ArchiveProgress(
            "archive", len(self.videos), len(self.reused), publish=False
        )

    @classmethod
    def open(
        cls,
        videos: Sequence[str],
        *,
        results_dir: str | None,
        pipeline: str,
        version: str,
        answer_parameters: Mapping[str, Any],
        run_id: str | None = None,
        publish: bool = True,
    ) -> Archive:
        """Keys the videos, finds their stored results and starts the progress artifact.

        Args:
            videos: The archive's videos.
            results_dir: The results folder, or None to keep none.
            pipeline: The pipeline's name.
            version: The pipeline's version.
            answer_parameters: The parameters that change an answer (part of the key).
            run_id: The flow run's id.
            publish: Create the Prefect progress artifact.
        """
        tag = version_tag(version, answer_parameters)
        store = ResultStore(results_dir, pipeline, tag) if results_dir else None
        archive = cls(videos, store, run_id=run_id)
        archive.progress = ArchiveProgress(
            pipeline, len(archive.videos), len(archive.reused), publish=publish
        )
        return archive

    @property
    def todo(self) -> list[str]:
        """The videos this run must process."""
        return [v for v in self.videos if v not in self.reused]

    def finish(
        self, entry: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
    ) -> None:
        """Stores one processed video's result (when answered cleanly) and advances.

        Args:
            entry: The video's report entry (``video``, ``answer``, ``errors``).
            records: Plan records of the run so far; the video's own are kept.
        """
        video = entry["video"]
        clean = entry["answer"] is not None and not entry["errors"]
        if self.store is not None and clean:
            mine = [dict(r) for r in records if r.get("group") == video]
            self.store.put(
                self.keys[video],
                {
                    "video": video,
                    "answer": entry["answer"],
                    "cost_usd": sum(r.get("cost_usd") or 0.0 for r in mine),
                    "invocations": mine,
                    "flow_run_id": self.run_id,
                },
            )
        self.progress.advance()

    def entries(self, processed: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The report's video entries, in archive order, stored ones included."""
        by_video = {e["video"]: dict(e) for e in processed}
        out = []
        for video in self.videos:
            if video in self.reused:
                stored = self.reused[video]
                out.append(
                    {
                        "video": video,
                        "answer": stored["answer"],
                        "errors": [],
                        "reused": True,
                        "key": self.keys[video],
                        "from_flow_run": stored.get("flow_run_id"),
                    }
                )
                continue
            entry = by_video.get(video, {"video": video, "answer": None, "errors": []})
            entry.update(reused=False, key=self.keys.get(video))
            out.append(entry)
        return out
