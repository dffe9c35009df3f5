"""The prefetcher's CachedImage writes: learned and released images, their spec and status.

Each write is idempotent (a 409 on create, a 404 on patch or delete, means done) and may
carry a precondition (resourceVersion, uid) so that a concurrent writer wins cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from imagesync.kubeclient import KubeError
from imagesync.names import CACHED_IMAGE_PLURAL, GROUP, VERSION
from prefetcher.kubecalls import MERGE_PATCH, KubeCalls, Obj


class CachedImageCalls(KubeCalls):
    """Create, patch and delete CachedImages (cluster-scoped, through the custom objects API)."""

    def patch_cached_image_status(
        self, name: str, status: Mapping[str, Any], resource_version: str = ""
    ) -> bool:
        """Merge-patch `status` of a CachedImage; False when the object is gone.

        With `resource_version` the patch applies only to that version (409 otherwise)."""
        patch: Obj = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            self._call(
                "patch",
                f"{CACHED_IMAGE_PLURAL}/status",
                f"patch cachedimage {name} status",
                self.custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                CACHED_IMAGE_PLURAL,
                name,
                patch,
                _content_type=MERGE_PATCH,
            )
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def create_cached_image(self, body: Mapping[str, Any]) -> str | None:
        """Create a CachedImage; its resourceVersion, or None when it exists already (the
        webhook may have won)."""
        name = (body.get("metadata") or {}).get("name", "")
        try:
            response = self._call(
                "create",
                CACHED_IMAGE_PLURAL,
                f"create cachedimage {name}",
                self.custom.create_cluster_custom_object,
                GROUP,
                VERSION,
                CACHED_IMAGE_PLURAL,
                dict(body),
            )
        except KubeError as exc:
            if exc.conflict:
                return None
            raise
        created = json.loads(response.data)
        return str((created.get("metadata") or {}).get("resourceVersion") or "")

    def patch_cached_image_spec(self, name: str, spec: Mapping[str, Any]) -> bool:
        """Merge-patch `spec` of a CachedImage (null removes a key); False when it is gone."""
        try:
            self._call(
                "patch",
                CACHED_IMAGE_PLURAL,
                f"patch cachedimage {name}",
                self.custom.patch_cluster_custom_object,
                GROUP,
                VERSION,
                CACHED_IMAGE_PLURAL,
                name,
                {"spec": dict(spec)},
                _content_type=MERGE_PATCH,
            )
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def patch_cached_image_profiles(
        self, name: str, profiles: list[Any], resource_version: str
    ) -> bool:
        """Set `spec.profiles` of a Learned CachedImage, only if it is still at
        `resource_version`; False when it is gone or someone else wrote it meanwhile (the
        next pass reads it again)."""
        body: Obj = {"spec": {"profiles": profiles}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            self._call(
                "patch",
                CACHED_IMAGE_PLURAL,
                f"patch cachedimage {name} profiles",
                self.custom.patch_cluster_custom_object,
                GROUP,
                VERSION,
                CACHED_IMAGE_PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
            )
        except KubeError as exc:
            if exc.not_found or exc.conflict:
                return False
            raise
        return True

    def delete_cached_image(self, name: str, uid: str = "") -> bool:
        """Delete a CachedImage, only if it still has `uid`; False when already gone."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call(
                "delete",
                CACHED_IMAGE_PLURAL,
                f"delete cachedimage {name}",
                self.custom.delete_cluster_custom_object,
                GROUP,
                VERSION,
                CACHED_IMAGE_PLURAL,
                name,
                body=body,
            )
        except KubeError as exc:
            if exc.not_found or exc.conflict:
                return False
            raise
        return True
