"""Names that other tools, manifests and tests rely on: API group, labels, annotations."""

from typing import Final

GROUP: Final = "image-sync.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CACHED_IMAGE_KIND: Final = "CachedImage"
CACHED_IMAGE_PLURAL: Final = "cachedimages"
CACHED_IMAGE_CRD: Final = f"{CACHED_IMAGE_PLURAL}.{GROUP}"

SOURCE_LEARNED: Final = "Learned"
SOURCE_DECLARED: Final = "Declared"

# Pod annotation: "true" opts a pod in (needed in opt-in mode), "false" opts it out.
ANNOTATION_ENABLED: Final = "image-sync.io/enabled"
# Pod annotation: "keep" leaves the pull policy alone but still lets the images be learned.
ANNOTATION_PULL_POLICY: Final = "image-sync.io/pull-policy"
PULL_POLICY_KEEP: Final = "keep"
# Namespace label: "false" leaves the namespace out (the webhook's namespaceSelector).
LABEL_ENABLED: Final = "image-sync.io/enabled"

# Labels on everything image-sync creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "image-sync"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"

# The simulator's kubelets manage Node objects with this annotation.
SIM_MANAGED_ANNOTATION: Final = "sim.image-sync.io/managed"

GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRESENT_LABEL: Final = "nvidia.com/gpu.present"
