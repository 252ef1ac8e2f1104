from nrm.migrations import run_env
from services.fund.models import FundTable

run_env(FundTable.metadata)
