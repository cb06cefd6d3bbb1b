"""The live-preview server's limits (docs/security.md): upload sizes, the storage quota, JSON and feature sizes, the
job queue, connections and upload deadlines, and the host names it answers.

Every module of :mod:`neuromv.serve` reads these as ``config.NAME`` at call time, so a test may patch
``neuromv.serve.config.NAME``. The CLI's ``--max-*`` options override the first ones (:func:`neuromv.serve.serve`).
"""

from __future__ import annotations

#: Largest song upload (bytes): a long song in a lossless format fits. ``--max-upload``.
MAX_UPLOAD = 512 * 2**20
#: Largest image upload (bytes). ``--max-image``.
MAX_IMAGE_UPLOAD = 32 * 2**20
#: Quota of the work folder (bytes): songs, their features and stems, images and videos. ``--max-storage``.
MAX_STORAGE = 2 * 2**30
#: Largest JSON request body (bytes): settings documents are a few hundred.
MAX_JSON = 64 * 1024
#: Deepest nesting of a JSON request (a settings document has 2 levels).
MAX_JSON_DEPTH = 16
#: Largest feature matrix a song may have (mel bands x frames, float32: 16 MB). One hour at 30 fps and 32 bands
#: is 3.5 million.
MAX_FEATURES = 2**22
#: Jobs that may wait for a free slot; more are refused with 429.
MAX_WAITING = 16
#: Finished jobs remembered (a prepare job's result holds weights and features; only the last few are kept).
MAX_FINISHED = 64
MAX_FINISHED_PREPARE = 8
#: Open connections and requests at once (uvicorn's ``limit_concurrency``; more get 503). ``--max-connections``.
MAX_CONNECTIONS = 64
#: Idle connections are closed after this many seconds (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_S = 5
#: An upload that sends nothing for this many seconds is cut off (408).
UPLOAD_IDLE_S = 5.0
#: After UPLOAD_GRACE_S seconds, an upload must have arrived at UPLOAD_MIN_RATE bytes/s on average, or it is cut off.
UPLOAD_MIN_RATE = 32 * 1024
UPLOAD_GRACE_S = 10.0
#: Bytes after the end of an image's data that are tolerated (some cameras append a preview or a video) besides
#: twice the image's own size.
IMAGE_TRAILER = 2**20
#: Host names the server always answers (a page of another site, or a DNS-rebound name, is refused).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Host names that mean "every interface" when bound to (such a server also answers any IP address).
WILDCARDS = ("0.0.0.0", "::", "")
