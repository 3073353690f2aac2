"""TeachCloud development cloud (simulated): a small server speaking the subset of the OpenStack
Keystone v3, Nova v2.1 and Glance v2 HTTP APIs that openstacksdk uses for TeachCloud.

Not part of the product: the portal reaches it exactly like a real cloud, through openstacksdk
over HTTP. Run it with ``python -m devcloud`` or start it in a thread with `DevCloud`:

    cloud = DevCloud(port=0).start()      # free port on 127.0.0.1
    cloud.auth_url                        # http://127.0.0.1:<port>/identity/v3
    cloud.fail("POST", r"/servers$", status=503, times=1)
    cloud.stop()

Private endpoints under ``/_devcloud/`` (reset, faults, raw servers, request log) let tests and
developers act behind the portal's back; `devcloud.client.DevCloudClient` calls them over HTTP.
"""

from .cloud import Cloud, CloudConfig
from .server import DevCloud

__all__ = ["Cloud", "CloudConfig", "DevCloud"]
