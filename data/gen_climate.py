#!/usr/bin/env python3
"""Regenerates data/climate_normals.csv, the bundled monthly climate normals.

Inputs (both in data/src/, stdlib only, nothing downloaded):
- climate-typed.csv: the hand-typed table (GeoNames id, name, coordinates,
  monthly mean temperature and relative humidity, period, source). Its figures
  were typed from memory of published tables and never re-checked, so on their
  own they have no checkable source.
- climate-sourced.csv: monthly mean temperatures (and, for a few rows, relative
  humidity) read from published tables, each row naming its source
  (see climate-sourced.md).

For each typed row whose city has a sourced row, the sourced figures replace
the typed ones; quality is `sourced` when every figure comes from the sourced
row (or the typed humidity was checked against a table named in
HUMIDITY_SOURCES), `temp_sourced` when the temperatures do and the humidity is
still the typed one. KEEP_TYPED lists the cities whose sourced row is not used, and why.
Every other row keeps its typed figures with quality `unsourced`.

Usage: gen_climate.py [OUTPUT_DIR]   (default: data/); writes climate_normals.csv
deterministically and prints the counts to stderr.
"""
import csv
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
TYPED = os.path.join(HERE, "src", "climate-typed.csv")
SOURCED = os.path.join(HERE, "src", "climate-sourced.csv")

MONTHS = ["%02d" % m for m in range(1, 13)]
HEADER = (
    ["geonames_id", "name", "country", "lat", "lon"]
    + ["t" + m for m in MONTHS]
    + ["rh" + m for m in MONTHS]
    + ["period", "source", "quality"]
)

# Bundled (GeoNames) name -> the name the sourced table uses for the same city.
ALIASES = {
    ("Ulan Bator", "MN"): "Ulaanbaatar",
    ("Delhi", "IN"): "New Delhi",
}

# Cities whose sourced row is not used: (name, country) -> why.
KEEP_TYPED = {
    ("Pyongyang", "KP"): "the sourced list's row was not used: its February (2.4 C, between -5.8 in "
    "January and 4.4 in March) looks like an error in the list itself",
}

# Typed humidity checked against a published table that the sourced table does not
# carry: (name, country) -> (source, the table's monthly values, which the typed row
# must equal).
HUMIDITY_SOURCES = {
    ("Hong Kong", "HK"): (
        "Hong Kong Observatory normals (1884-1939 and 1947-2010) as copied from Wikipedia at "
        "http://www.liquisearch.com/climate_of_hong_kong/statistics",
        ["74", "80", "82", "83", "83", "82", "81", "81", "78", "73", "71", "69"],
    ),
}

# The sourced table's period texts, shortened for the bundled period column.
PERIODS = {
    "unspecified (per-city period as on Wikipedia city articles, mix of "
    "1961-1990/1971-2000/1981-2010/1991-2020)": "unspecified",
    "1981-2010": "1981-2010",
    "1991-2020": "1991-2020",
    "1981-2010 per caption (reference cited is CMA 1971-2000 international-exchange-station "
    "normals; treat period as uncertain)": "1981-2010 per caption (cited normals 1971-2000)",
}

# A sourced row with coordinates must lie this close to the bundled city.
MAX_KM = 25.0


def km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def fail(message):
    sys.exit("gen_climate.py: " + message)


def one_decimal(text):
    value = round(float(text), 1)
    return "%.1f" % (value + 0.0)  # + 0.0 turns -0.0 into 0.0


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sourced_row(sourced, row):
    """The sourced row for a typed row's city, or None."""
    key = (row["name"], row["country"])
    name = ALIASES.get(key, row["name"])
    found = [s for s in sourced if s["city_en"] == name and s["country"] == row["country"]]
    # A city with several readings: the one with humidity (a station table) wins.
    with_rh = [s for s in found if s["rh01"]]
    if with_rh:
        found = with_rh
    if len(found) > 1:
        fail("%s, %s: %d sourced rows, cannot choose" % (row["name"], row["country"], len(found)))
    if not found:
        return None
    s = found[0]
    if s["lat"] and s["lon"]:
        d = km(float(row["lat"]), float(row["lon"]), float(s["lat"]), float(s["lon"]))
        if d > MAX_KM:
            fail("%s: the sourced row lies %.0f km away" % (row["name"], d))
    return s


def main():
    typed = read(TYPED)
    sourced = read(SOURCED)
    used_aliases, used_keep, used_rh = set(), set(), set()
    counts = {"sourced": 0, "temp_sourced": 0, "unsourced": 0}
    out_rows = []
    for row in typed:
        key = (row["name"], row["country"])
        s = sourced_row(sourced, row)
        temps = [row["t" + m] for m in MONTHS]
        rh = [row["rh" + m] for m in MONTHS]
        period, source, quality = row["period"], row["source"], "unsourced"
        if key in ALIASES:
            used_aliases.add(key)
        if s is not None and key in KEEP_TYPED:
            used_keep.add(key)
            source = "%s; %s" % (source, KEEP_TYPED[key])
        elif s is not None:
            if s["period"] not in PERIODS:
                fail("%s: unknown period %r (add it to PERIODS)" % (row["name"], s["period"]))
            temps = [one_decimal(s["t" + m]) for m in MONTHS]
            period = PERIODS[s["period"]]
            source = s["source"]
            if key in ALIASES:
                source = "%s row: %s" % (s["city_en"], source)
            if s["rh01"]:
                rh = [s["rh" + m] for m in MONTHS]
                quality = "sourced"
            elif key in HUMIDITY_SOURCES:
                used_rh.add(key)
                rh_source, rh_values = HUMIDITY_SOURCES[key]
                if rh != rh_values:
                    fail("%s: typed humidity %s differs from its source" % (row["name"], rh))
                source = "temperatures: %s; humidity: %s" % (source, rh_source)
                quality = "sourced"
            elif any(rh):
                source = "temperatures: %s; humidity (unsourced): %s" % (source, row["source"])
                quality = "temp_sourced"
            else:
                quality = "sourced"
        counts[quality] += 1
        out_rows.append(
            [row["geonames_id"], row["name"], row["country"], row["lat"], row["lon"]]
            + temps
            + rh
            + [period, source, quality]
        )
    unused = (
        (set(ALIASES) - used_aliases)
        | (set(KEEP_TYPED) - used_keep)
        | (set(HUMIDITY_SOURCES) - used_rh)
    )
    for key in sorted(unused):
        fail("%s, %s: listed in ALIASES/KEEP_TYPED/HUMIDITY_SOURCES but not used" % key)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "climate_normals.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(out_rows)
    print(
        "climate_normals.csv: %d rows: %d sourced, %d temp_sourced, %d unsourced"
        % (len(out_rows), counts["sourced"], counts["temp_sourced"], counts["unsourced"]),
        file=sys.stderr,
    )


main()
