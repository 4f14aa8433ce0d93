"""MASUKA: start the studio. ``python app.py --help`` lists the flags."""

import argparse
import sys

from masuka.cli import data_dir_name, main


def run() -> int:
    from masuka.commands.serve import add_server_arguments

    parser = argparse.ArgumentParser(description="MASUKA: datasets, LoRA training, images and videos.")
    parser.add_argument("--data-dir", type=data_dir_name, help="data folder (default: $MASUKA_DATA_DIR or ./data)")
    add_server_arguments(parser)
    args = parser.parse_args()
    argv = ["serve", "--host", args.host, "--port", str(args.port)]
    argv += ["--share"] * args.share + ["--ngrok"] * args.ngrok + ["--api-open"] * args.api_open
    argv += ["--auth", args.auth] * (args.auth is not None) + ["--data-dir", args.data_dir] * bool(args.data_dir)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
