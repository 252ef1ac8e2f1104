from nrm.migrations import run_env
from services.intake.models import IntakeTable

run_env(IntakeTable.metadata)
