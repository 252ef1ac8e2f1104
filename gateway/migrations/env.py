from gateway.models import GatewayTable
from nrm.migrations import run_env

run_env(GatewayTable.metadata)
