"""Get, paged list and watch as the real server does them — a part of `Core` kept apart."""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Mapping
from typing import Any

from . import errors
from .errors import ApiError
from .objects import as_version
from .resources import ResourceDef
from .selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from .store import Store
from .watch import Watcher, WatchOptions, WatchStream

Obj = dict[str, Any]


class Reads:
    """Mixed into `Core`, which provides the attributes below."""

    store: Store
    bookmark_interval: float
    default_watch_timeout: float

    def get(self, rd: ResourceDef, namespace: str, name: str) -> Obj:
        obj = self.store.get(rd.key, namespace if rd.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rd.plural, rd.group, name)
        return as_version(rd, obj)

    def list(self, rd: ResourceDef, namespace: str | None, query: Mapping[str, str]) -> Obj:
        labels, fields, namespace, node = _selection(rd, namespace, query)
        rv_param = query.get("resourceVersion", "")
        exact = query.get("resourceVersionMatch", "") == "Exact"
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError as e:
            raise errors.bad_request(f"invalid limit: {query.get('limit')}") from e
        if rv_param == "0":
            limit = 0  # served from the watch cache: the whole list, like the real server
        cont = query.get("continue", "")
        after: tuple[str, str] | None = None
        with self.store.lock:
            list_rv = self.store.rv
            snapshot = False
            if rv_param not in ("", "0") and not cont:
                try:
                    want = int(rv_param)
                except ValueError as e:
                    raise errors.bad_request(f"invalid resource version: {rv_param}") from e
                if want > list_rv:
                    raise ApiError(
                        504,
                        "Timeout",
                        f"Too large resource version: {want}, current: {list_rv}",
                        retry_after=1,
                    )
                if exact:
                    list_rv, snapshot = want, True
            if cont:
                token = self._decode_continue(cont)
                if token["rv"] < self.store.oldest_rv():
                    raise errors.expired(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter."
                    )
                list_rv, snapshot = token["rv"], True
                after = (token["ns"], token["name"])
            # The state at list_rv: current objects, with those changed since put back.
            past = self.store.state_at(rd.key, list_rv) if snapshot else {}
            items: list[Obj] = []
            next_after: tuple[str, str] | None = None
            remaining = 0
            if node is not None and not limit and not past:
                cands = self.store.objects(rd.key, namespace, node)
                cands.sort(
                    key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                )
                items = [
                    o
                    for o in cands
                    if labels.matches(o["metadata"].get("labels")) and fields.matches(o)
                ]
            else:
                gone = sorted(
                    ref
                    for ref, was in past.items()
                    if was is not None
                    and self.store.get(rd.key, *ref) is None
                    and (namespace is None or ref[0] == namespace)
                    and (after is None or ref > after)
                )
                refs = heapq.merge(self.store.sorted_refs(rd.key, namespace, after), gone)
                for ref in refs:
                    obj = past[ref] if ref in past else self.store.get(rd.key, *ref)
                    if (
                        obj is None
                        or not labels.matches(obj["metadata"].get("labels"))
                        or not fields.matches(obj)
                    ):
                        continue
                    if limit and len(items) >= limit:
                        next_after = (
                            items[-1]["metadata"].get("namespace", ""),
                            items[-1]["metadata"]["name"],
                        )
                        remaining = 1 + sum(1 for _ in refs)
                        break
                    items.append(obj)
        meta: Obj = {"resourceVersion": str(list_rv)}
        if next_after is not None:
            meta["continue"] = self._encode_continue(list_rv, next_after)
            if labels.empty and fields.empty:
                meta["remainingItemCount"] = remaining
        if rd.custom or rd.storage_group is not None:
            items = [as_version(rd, o) for o in items]
        if rd.custom:
            meta.setdefault("continue", "")  # the real server's unstructured lists say so
        return {
            "kind": f"{rd.kind}List",
            "apiVersion": rd.api_version,
            "metadata": meta,
            "items": items,
        }

    @staticmethod
    def _encode_continue(rv: int, after: tuple[str, str]) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "ns": after[0], "name": after[1]})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_continue(token: str) -> Obj:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"==="))
            return {"rv": int(data["rv"]), "ns": str(data["ns"]), "name": str(data["name"])}
        except (ValueError, KeyError, TypeError) as e:
            raise errors.bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion"
            ) from e

    def watch(
        self, rd: ResourceDef, namespace: str | None, query: Mapping[str, str]
    ) -> WatchStream:
        labels, fields, namespace, node = _selection(rd, namespace, query)
        rv_param = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents", "") == "true"
        since: int | None
        if rv_param in ("", "0"):
            since = None
        else:
            try:
                since = int(rv_param)
            except ValueError as e:
                raise errors.bad_request(f"invalid resource version: {rv_param}") from e
            if send_initial:
                since = None
        timeout = float(query.get("timeoutSeconds", "") or self.default_watch_timeout)
        watcher = Watcher(rd.key, namespace, node or None, labels, fields)
        options = WatchOptions(
            since,
            timeout,
            query.get("allowWatchBookmarks", "") == "true",
            send_initial and query.get("allowWatchBookmarks", "") == "true",
        )
        stream = WatchStream(self.store, rd, watcher, [], options, self.bookmark_interval)
        try:
            initial = self.store.watch(watcher, since)
        except ApiError as e:
            stream.error = e.status()
            return stream
        if rd.custom or rd.storage_group is not None:
            initial = [(k, as_version(rd, o)) for k, o in initial]
            stream.convert = lambda o: as_version(rd, o)
        stream.initial = initial
        return stream


def _selection(
    rd: ResourceDef, namespace: str | None, query: Mapping[str, str]
) -> tuple[LabelSelector, FieldSelector, str | None, str | None]:
    """Selectors of a list or watch, with the namespace and pod node they pin down.

    A field selector on metadata.namespace narrows a cluster-wide request to one namespace,
    and one on spec.nodeName lets pod requests use the store's per-node index.
    """
    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = parse_field_selector(query.get("fieldSelector", ""), rd.field_labels)
    if namespace is None:
        namespace = fields.exact("metadata.namespace")
    node = (fields.exact("spec.nodeName") or None) if rd.plural == "pods" and not rd.group else None
    return labels, fields, namespace, node
