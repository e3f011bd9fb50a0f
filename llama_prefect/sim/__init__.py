"""A discrete-event simulator that drives `core.scheduler` on simulated time.

`workload` builds the pipeline, profiles and archives of videos from a real profile
store; `backends` models Lambda, an ECS GPU pool and a fixed CPU pool with their
limits, start-up delays and billing; `engine` runs one policy over one archive;
`oracle` computes the per-video hindsight optimum; `policies` holds the Llama
variants and the baselines, all as settings of the same scheduler.
"""
