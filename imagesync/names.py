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
SOURCE_OBSERVED: Final = "Observed"  # held by some node (node.status.images)
SOURCE_CATALOG: Final = "Catalog"  # listed by the registry (newest tags of each repository)

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

# Pod annotation the webhook adds to a pod it rewrote: the names of the containers whose pull
# policy it set to IfNotPresent (comma-separated), so a stored pod shows whether the rewrite
# survived admission (AlwaysPullImages sets the policy back to Always after the webhook).
ANNOTATION_REWRITTEN: Final = "image-sync.io/rewritten-containers"
# The simulator's kubelets manage Node objects with this annotation.
SIM_MANAGED_ANNOTATION: Final = "sim.image-sync.io/managed"

GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRESENT_LABEL: Final = "nvidia.com/gpu.present"

# --- prefetcher pods -------------------------------------------------------------------
COMPONENT_PULLER: Final = "puller"
COMPONENT_KEEPER: Final = "keeper"
# Pod label: the node a puller / keeper serves (a hash when the name is too long for a label).
LABEL_NODE: Final = "image-sync.io/node"
# Pod annotations: the full node name, the image a puller pulls, the images a keeper holds
# (a JSON list), and which pull attempt a puller is.
ANNOTATION_NODE: Final = "image-sync.io/node"
ANNOTATION_IMAGE: Final = "image-sync.io/image"
ANNOTATION_IMAGES: Final = "image-sync.io/images"
ANNOTATION_ATTEMPT: Final = "image-sync.io/attempt"
PULLER_NAME_PREFIX: Final = "isync-pull-"
KEEPER_NAME_PREFIX: Final = "isync-keep-"
# Where the sleeper lives in the tools image, and where pods copy it to (an emptyDir).
SLEEPER_PATH: Final = "/usr/local/bin/image-sync-sleeper"
SLEEPER_DIR: Final = "/.image-sync"
SLEEPER_COPY: Final = f"{SLEEPER_DIR}/image-sync-sleeper"
# The one volume of puller and keeper pods: the emptyDir the sleeper is copied into.
SLEEPER_VOLUME: Final = "image-sync-bin"
# Label selector for every pod the prefetcher owns.
MANAGED_POD_SELECTOR: Final = (
    f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT} in ({COMPONENT_PULLER},{COMPONENT_KEEPER})"
)
# Well-known node labels the prefetcher reads.
LABEL_ARCH: Final = "kubernetes.io/arch"
LABEL_OS: Final = "kubernetes.io/os"
LABEL_INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
# Node annotation: the image filesystem's capacity in bytes when ephemeral-storage does not say.
ANNOTATION_IMAGE_FS_CAPACITY: Final = "image-sync.io/image-fs-capacity"

# Installed objects (manifests/, certs): the webhook's Service, TLS Secret and configuration.
NAMESPACE_DEFAULT: Final = "image-sync"
# Where puller and keeper pods run, under a ServiceAccount with no rights and no token: a
# namespace of their own, holding nothing but the pull secrets they name.
POD_NAMESPACE_DEFAULT: Final = "image-sync-cache"
POD_SERVICE_ACCOUNT: Final = "image-sync-cache"
WEBHOOK_SERVICE: Final = "image-sync-webhook"
WEBHOOK_TLS_SECRET: Final = "image-sync-webhook-tls"
WEBHOOK_CONFIGURATION: Final = "image-sync"
WEBHOOK_NAME: Final = "pods.image-sync.io"
# The pod namespace's admission guard: a ValidatingWebhookConfiguration calling
# /validate-pods, or (the admission-policy overlay) a ValidatingAdmissionPolicy.
POD_GUARD_CONFIGURATION: Final = "image-sync-pod-guard"
WEBHOOK_PORT: Final = 8443
PREFETCHER_PORT: Final = 8080
# PriorityClass of keeper and puller pods: the lowest, never preempting, first to be evicted.
KEEPER_PRIORITY_CLASS: Final = "image-sync-keeper"
# The one image of every component (webhook, prefetcher, certs, the sleeper at SLEEPER_PATH).
IMAGE: Final = "ghcr.io/image-sync/image-sync:0.1.0"
