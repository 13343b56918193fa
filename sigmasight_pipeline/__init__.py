"""SigmaSight pipeline: portfolio risk analytics as Dagster assets on PostgreSQL."""

import warnings

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
