from nrm.migrations import run_env
from services.referral.models import ReferralTable

run_env(ReferralTable.metadata)
