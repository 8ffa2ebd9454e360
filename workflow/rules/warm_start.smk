# A warm start for local runs (cromss.warm): one process imports torch and the model stack once
# and every `cromss` job is forked from it, instead of importing them again per job. Off for
# cluster executors, dry runs, conda/apptainer deployment (jobs must run in their own
# environment) and with resources.warm_start: false; jobs run on their own if it is not up.
import atexit
import shutil
from pathlib import Path
import subprocess
import sys
import tempfile

from snakemake_interface_executor_plugins.settings import DeploymentMethod

WARM_SOCKET_VARIABLE = "CROMSS_WARM"  # cromss.warm.ENV: the jobs' commands find the server by it

WARM_SERVER = {}


def start_warm_server():
    deployed = set(workflow.deployment_settings.deployment_method) & {
        DeploymentMethod.CONDA, DeploymentMethod.APPTAINER}
    if (not config.get("resources", {}).get("warm_start", True) or not workflow.local_exec or deployed
            or os.environ.get(WARM_SOCKET_VARIABLE)):
        return
    folder = Path(tempfile.mkdtemp(prefix="cromss-warm-"))
    server = subprocess.Popen([sys.executable, "-m", "cromss.warm", str(folder / "socket")],
                              stdin=subprocess.DEVNULL)
    WARM_SERVER.update(server=server, folder=folder)
    os.environ[WARM_SOCKET_VARIABLE] = str(folder / "socket")
    atexit.register(stop_warm_server)


def stop_warm_server():
    os.environ.pop(WARM_SOCKET_VARIABLE, None)
    server, folder = WARM_SERVER.pop("server", None), WARM_SERVER.pop("folder", None)
    if server is not None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


onstart:
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()
