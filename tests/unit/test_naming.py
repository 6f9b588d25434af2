"""Namespace names and labels."""

from __future__ import annotations

import re

import pytest

from kubefixtures import naming

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@pytest.mark.parametrize(
    ("prefix", "environment"),
    [
        ("kf", "shop"),
        ("kf", "Shop_Service.With Odd--Chars"),
        ("kf", "x" * 200),
        ("a" * 32, "y" * 80),
        ("kf", "___"),
    ],
)
def test_namespace_names_are_dns_labels_with_prefix_and_random_suffix(
    prefix: str, environment: str
) -> None:
    name = naming.namespace_name(prefix, environment)
    assert len(name) <= 63
    assert DNS_1123_LABEL.fullmatch(name), name
    assert name.startswith(prefix + "-")
    assert re.search(r"-[a-z][a-z0-9]{5}$", name)


def test_namespace_names_differ_between_calls() -> None:
    names = {naming.namespace_name("kf", "shop") for _ in range(200)}
    assert len(names) == 200


def test_shop_reads_well() -> None:
    assert re.fullmatch(r"kf-shop-[a-z][a-z0-9]{5}", naming.namespace_name("kf", "shop"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", "alice"),
        ("DOMAIN\\alice", "DOMAIN_alice"),
        ("-leading.and.trailing-", "leading.and.trailing"),
        ("host.example.com", "host.example.com"),
        ("z" * 100, "z" * 63),
        ("@@@", ""),
    ],
)
def test_label_values_are_sanitised(text: str, expected: str) -> None:
    value = naming.label_value(text)
    assert value == expected
    assert LABEL_VALUE.fullmatch(value)


def test_labels_mark_the_namespace_as_ours_with_session_user_host_and_ci_job() -> None:
    labels = naming.namespace_labels("abc123", "shop", environ={"CI_JOB_ID": "4711"})
    assert labels[naming.MANAGED_BY_LABEL] == "kubefixtures"
    assert labels[naming.SESSION_LABEL] == "abc123"
    assert labels[naming.ENVIRONMENT_LABEL] == "shop"
    assert labels[naming.USER_LABEL]
    assert labels[naming.HOST_LABEL]
    assert labels[naming.CI_JOB_LABEL] == "4711"
    assert all(LABEL_VALUE.fullmatch(value) for value in labels.values())


def test_no_ci_job_label_outside_ci() -> None:
    assert naming.CI_JOB_LABEL not in naming.namespace_labels("s", "e", environ={})


@pytest.mark.parametrize(
    ("environ", "job"),
    [
        ({"GITHUB_RUN_ID": "99", "CI_JOB_ID": "1"}, "99"),
        ({"BUILDKITE_JOB_ID": "0188-abc"}, "0188-abc"),
        ({"BUILD_TAG": "jenkins-job-12"}, "jenkins-job-12"),
        ({"CI": "true"}, None),
    ],
)
def test_ci_job_ids_come_from_the_usual_variables(environ: dict[str, str], job: str | None) -> None:
    assert naming.ci_job_id(environ) == job


def test_session_ids_are_short_and_start_with_a_letter() -> None:
    session_id = naming.new_session_id()
    assert re.fullmatch(r"[a-z][a-z0-9]{7}", session_id)
