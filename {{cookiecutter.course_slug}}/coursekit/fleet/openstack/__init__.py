"""The openstack provider: one VM per seat on Jetstream2 or another OpenStack cloud, through openstacksdk."""
