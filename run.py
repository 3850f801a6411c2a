"""Sacred entry point: ``python run.py with <named configs> key=value ...``.

``python run.py print_config with task_mlm_itm_mae`` shows the composed config;
``with configs/x.yaml`` loads a YAML file of keys the same way.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from vlt.config import default_config, ex, named_config_names  # noqa: E402
from vlt.config_check import ConfigError, check_cli_updates, validate_config  # noqa: E402


@ex.main
def main(_config):
    config = {k: v for k, v in _config.items() if not k.startswith("_")}
    validate_config(config)
    from vlt.train import run

    result = run(config)
    print(f"run directory: {result['run_dir']}")
    if result["last_checkpoint"]:
        print(f"last checkpoint: {result['last_checkpoint']}")
    return result["metrics"]


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        check_cli_updates(sys.argv[1:], default_config(), named_config_names())
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    try:
        ex.run_commandline()
    except ConfigError as err:
        sys.exit(f"config error: {err}")
