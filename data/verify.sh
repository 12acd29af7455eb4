#!/usr/bin/env bash
# CI check: regenerates the place and climate data into a temp dir and diffs it against the committed files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$here/regen.sh" "$tmp"
status=0
for f in gazetteer.tsv phone_cn.tsv calling_codes.tsv climate_normals.csv; do
  if ! cmp -s "$here/$f" "$tmp/$f"; then
    echo "data/$f differs from its regeneration (run data/regen.sh):" >&2
    diff "$here/$f" "$tmp/$f" | head -20 >&2 || true
    status=1
  fi
done
[ "$status" = 0 ] && echo "place and climate data reproduce byte for byte"
exit "$status"
