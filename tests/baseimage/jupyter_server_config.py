# As in docker-stacks: listen on all interfaces, no browser. Jupyter Server reads the
# port from JUPYTER_PORT and the token from JUPYTER_TOKEN.
c = get_config()  # noqa: F821
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/home/jovyan"
