"""The nginx target: rendered include files, validated with `nginx -t` and reloaded.

`NginxDriver` is the driver registered for `type: nginx`; `render` holds the file format.
"""

from clampdown.targets.nginx.driver import NginxDriver

__all__ = ["NginxDriver"]
