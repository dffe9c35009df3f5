"""List and watch semantics: resourceVersions, resume, 410 Expired, bookmarks, selectors, paging."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from simulator.testing import running_apiserver
from tests.simulator.conftest import pod_body


def _events(url: str, **params: str) -> Iterator[dict[str, Any]]:
    with requests.get(url, params={"watch": "true", **params}, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        for line in resp.iter_lines():
            if line:
                yield json.loads(line)


def test_resume_replays_every_change_in_order(core, apiserver) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", "default")
    w = watch.Watch()
    seen: list[Any] = []
    for ev in w.stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30
    ):
        seen.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "a", "1"), ("MODIFIED", "a", "2"), ("DELETED", "a", "2")]


def test_watch_without_version_starts_with_synthetic_added(core) -> None:
    for name in ("b", "a"):
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    w = watch.Watch()
    seen: list[Any] = []
    for ev in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=30):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_resource_versions_increase_globally(core) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespace({"metadata": {"name": "other"}})
    c = core.patch_namespaced_config_map("a", "default", {"data": {"x": "y"}})
    versions = [int(o.metadata.resource_version) for o in (a, b, c)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_selector_transitions_become_added_and_deleted(core, apiserver) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    rv = core.read_namespaced_pod("p", "default").metadata.resource_version
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "web"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"tier": "x"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": None}}})
    url = f"{apiserver.url}/api/v1/namespaces/default/pods"
    seen: list[Any] = []
    for ev in _events(url, resourceVersion=rv, labelSelector="app=web", timeoutSeconds="30"):
        seen.append(ev["type"])
        if len(seen) == 3:
            break
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_node_field_selector_watch_sees_binding(core, apiserver) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    core.create_namespaced_pod("default", pod_body("other", node="n2"))
    url = f"{apiserver.url}/api/v1/pods"
    binding = {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}
    seen: list[Any] = []
    for ev in _events(
        url, fieldSelector="spec.nodeName=n1", allowWatchBookmarks="true", timeoutSeconds="30"
    ):
        if ev["type"] == "BOOKMARK":
            if not seen:
                core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
            continue
        seen.append(
            (ev["type"], ev["object"]["metadata"]["name"], ev["object"]["spec"]["nodeName"])
        )
        break
    assert seen == [("ADDED", "p", "n1")]


def test_too_old_resource_version_is_410_expired() -> None:
    with running_apiserver(history_size=5) as server:
        url = f"{server.url}/api/v1/namespaces/default/configmaps"
        for i in range(20):
            requests.post(url, json={"metadata": {"name": f"cm{i}"}}, timeout=10).raise_for_status()
        events = list(_events(url, resourceVersion="1", timeoutSeconds="30"))
        assert len(events) == 1
        assert events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["kind"] == "Status"
        assert status["code"] == 410
        assert status["reason"] == "Expired"
        assert status["message"].startswith("too old resource version: 1")


def test_expired_continue_token_is_http_410() -> None:
    with running_apiserver(history_size=5) as server:
        url = f"{server.url}/api/v1/namespaces/default/configmaps"
        for i in range(3):
            requests.post(url, json={"metadata": {"name": f"cm{i}"}}, timeout=10).raise_for_status()
        page = requests.get(url, params={"limit": "1"}, timeout=10).json()
        token = page["metadata"]["continue"]
        for i in range(20):
            requests.post(
                url, json={"metadata": {"name": f"more{i}"}}, timeout=10
            ).raise_for_status()
        resp = requests.get(url, params={"limit": "1", "continue": token}, timeout=10)
        assert resp.status_code == 410
        assert resp.json()["reason"] == "Expired"


def test_bookmarks_carry_the_current_resource_version(core, apiserver) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    current = core.list_namespaced_config_map("default").metadata.resource_version
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps"
    for ev in _events(
        url, resourceVersion=current, allowWatchBookmarks="true", timeoutSeconds="30"
    ):
        assert ev["type"] == "BOOKMARK"
        assert ev["object"] == {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": current},
        }
        break


def test_send_initial_events_ends_with_annotated_bookmark(core, apiserver) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps"
    params = {
        "sendInitialEvents": "true",
        "allowWatchBookmarks": "true",
        "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "30",
    }
    types = []
    for ev in _events(url, **params):
        types.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            assert ev["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            break
    assert types == ["ADDED", "BOOKMARK"]


def test_timeout_seconds_ends_the_stream(apiserver) -> None:
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps"
    assert list(_events(url, resourceVersion="1", timeoutSeconds="1")) == []


def test_label_selector_operators(core) -> None:
    labels = {"a": {"app": "web", "tier": "fe"}, "b": {"app": "db"}, "c": {"tier": "be"}, "d": {}}
    for name, lab in labels.items():
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": lab}})

    def names(selector: str) -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map("default", label_selector=selector).items
        ]

    assert names("app=web") == ["a"]
    assert names("app==web") == ["a"]
    assert names("app!=web") == ["b", "c", "d"]
    assert names("app in (web,db)") == ["a", "b"]
    assert names("app notin (web)") == ["b", "c", "d"]
    assert names("tier") == ["a", "c"]
    assert names("!tier") == ["b", "d"]
    assert names("app,tier=fe") == ["a"]
    with pytest.raises(ApiException) as err:
        names("app=(")
    assert err.value.status == 400


def test_field_selectors(core) -> None:
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_pod("default", pod_body("a", node="n1"))
    core.create_namespaced_pod("default", pod_body("b"))
    core.create_namespaced_pod("other", pod_body("c", node="n1"))
    core.patch_namespaced_pod_status("b", "default", {"status": {"phase": "Running"}})

    def names(selector: str) -> list[str]:
        return [
            p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=selector).items
        ]

    assert names("spec.nodeName=n1") == ["a", "c"]
    assert names("spec.nodeName=") == ["b"]
    assert names("spec.nodeName!=n1") == ["b"]
    assert names("status.phase=Running") == ["b"]
    assert names("metadata.namespace=other") == ["c"]
    assert names("metadata.name=a,spec.nodeName=n1") == ["a"]
    with pytest.raises(ApiException) as err:
        names("spec.hostname=x")
    assert err.value.status == 400


def test_pagination_with_limit_and_continue(core) -> None:
    for i in range(25):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i:02d}"}})
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map("default", limit=10, _continue=token)
        pages += 1
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            assert page.metadata.remaining_item_count is None
            break
        assert page.metadata.remaining_item_count == 25 - len(names)
    assert pages == 3
    assert names == sorted(names) and len(names) == 25
    everything = core.list_namespaced_config_map("default", limit=10, resource_version="0")
    assert len(everything.items) == 25  # resourceVersion=0 is served whole, like the watch cache


def test_list_is_404_for_unserved_version(apiserver) -> None:
    assert requests.get(f"{apiserver.url}/apis/apps/v2/deployments", timeout=10).status_code == 404


def test_metadata_only_lists_and_legacy_watch_paths(core, apiserver) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"big": "x"}})
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    listed = requests.get(
        f"{apiserver.url}/api/v1/namespaces/default/configmaps",
        headers={"Accept": accept},
        timeout=10,
    ).json()
    assert listed["kind"] == "PartialObjectMetadataList"
    assert listed["items"][0]["kind"] == "PartialObjectMetadata"
    assert listed["items"][0]["metadata"]["name"] == "a" and "data" not in listed["items"][0]
    url = f"{apiserver.url}/api/v1/watch/namespaces/default/configmaps/a"
    with requests.get(url, params={"timeoutSeconds": "30"}, stream=True, timeout=30) as resp:
        first = json.loads(next(line for line in resp.iter_lines() if line))
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")


def test_concurrent_writers_lose_no_event(core, apiserver) -> None:
    start = core.list_namespaced_config_map("default").metadata.resource_version
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps"

    def write(prefix: str) -> None:
        with requests.Session() as s:
            for i in range(40):
                s.post(
                    url, json={"metadata": {"name": f"{prefix}-{i}"}}, timeout=10
                ).raise_for_status()
                s.patch(
                    f"{url}/{prefix}-{i}",
                    json={"data": {"n": str(i)}},
                    headers={"Content-Type": "application/merge-patch+json"},
                    timeout=10,
                ).raise_for_status()

    writers = [threading.Thread(target=write, args=(p,)) for p in "abcd"]
    for t in writers:
        t.start()
    seen: list[tuple[str, str, int]] = []
    for ev in _events(url, resourceVersion=start, timeoutSeconds="60"):
        seen.append(
            (
                ev["type"],
                ev["object"]["metadata"]["name"],
                int(ev["object"]["metadata"]["resourceVersion"]),
            )
        )
        if len(seen) == 320:
            break
    for t in writers:
        t.join()
    versions = [rv for _, _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == 320
    assert {n for t, n, _ in seen if t == "ADDED"} == {
        f"{p}-{i}" for p in "abcd" for i in range(40)
    }
    assert sum(1 for t, _, _ in seen if t == "MODIFIED") == 160


def test_pages_and_exact_lists_are_consistent_snapshots(core) -> None:
    for name in "abcdef":
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": name}, "data": {"v": "1"}}
        )
    first = core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["a", "b"]
    core.delete_namespaced_config_map("c", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "bb"}})
    core.patch_namespaced_config_map("d", "default", {"data": {"v": "2"}})
    second = core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert [(c.metadata.name, c.data["v"]) for c in second.items] == [("c", "1"), ("d", "1")]
    assert second.metadata.resource_version == first.metadata.resource_version
    third = core.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in third.items] == ["e", "f"] and not third.metadata._continue
    then = core.list_namespaced_config_map(
        "default", resource_version=first.metadata.resource_version, resource_version_match="Exact"
    )
    assert [c.metadata.name for c in then.items] == list("abcdef")
    now = core.list_namespaced_config_map("default")
    assert [c.metadata.name for c in now.items] == ["a", "b", "bb", "d", "e", "f"]
