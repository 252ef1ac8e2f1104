from nrm.migrations import run_env
from services.notify.models import NotifyTable

run_env(NotifyTable.metadata)
