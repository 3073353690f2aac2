"""Cloud backends: `base` defines the interface, `openstack` implements it with openstacksdk."""
