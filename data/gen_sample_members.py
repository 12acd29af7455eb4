#!/usr/bin/env python3
"""Generates data/sample-members.jsonl: fictional CRM members for `almanac plan`,
`almanac simulate` and the daemon's demo.

Deterministic (fixed seed): running it again writes the same bytes. Every field is
one of `crate::members::Member` (serde, deny_unknown_fields). Phone numbers use
real mainland mobile prefixes (7 digits: 138-0045 is Harbin, 138-0020 Guangzhou)
with fictional subscriber digits, and the fictional ranges elsewhere (+44 7700 900,
+1 212 555 01, +61 491 570). Location hints vary like a real CRM's: most members
state a city (in Chinese or English), some only left a phone number or GPS
coordinates, a few nothing at all (unresolved).

Usage: python3 data/gen_sample_members.py > data/sample-members.jsonl
"""

import json
import random
import sys

SEED = 20270801

# name_en, name_zh, province_zh, lat, lon, mobile prefixes (7 digits), count, languages
MAINLAND = [
    ("Harbin", "哈尔滨", "黑龙江省", 45.75, 126.65, ["1380045", "1380364", "1380460"], 40, []),
    ("Guangzhou", "广州", "广东省", 23.1167, 113.25, ["1380020", "1380009", "1380240"], 50, ["yue-Hans"]),
    ("Beijing", "北京", "北京市", 39.9075, 116.3972, ["1380064", "1380080", "1380084"], 50, ["zh-Hans"]),
    ("Shanghai", "上海", "上海市", 31.2222, 121.4581, ["1380021"], 50, ["zh-Hans", "wuu-Hans"]),
    ("Chengdu", "成都", "四川省", 30.6667, 104.0667, ["1380028", "1380817", "1390080"], 35, []),
    ("Suzhou", "苏州", "江苏省", 31.3041, 120.5954, ["1380154", "1380613", "1380905"], 25, []),
    ("Shenzhen", "深圳", "广东省", 22.5455, 114.0683, ["1380255", "1380270", "1380880"], 25, ["zh-Hans", "yue-Hans"]),
    ("Hangzhou", "杭州", "浙江省", 30.2936, 120.1614, ["1380057", "1380068", "1380650"], 20, []),
    ("Wuhan", "武汉", "湖北省", 30.5833, 114.2667, ["1380026", "1380074", "1380722"], 15, []),
    ("Nanjing", "南京", "江苏省", 32.0617, 118.7778, ["1380025", "1380158", "1380900"], 15, []),
    ("Chongqing", "重庆", "重庆市", 29.5628, 106.5528, ["1380023", "1390082", "1390825"], 15, []),
]

# name, name_zh, country, lat, lon, phone builder, count, languages
ABROAD = [
    ("Hong Kong", "香港", "HK", 22.2783, 114.1747, lambda r: "+852" + str(r.choice([5, 6, 9])) + f"{r.randrange(10**7):07d}", 40, ["yue-Hant-HK", "zh-Hant-HK", "en"]),
    ("Taipei", "台北", "TW", 25.0478, 121.5319, lambda r: "+8869" + f"{r.randrange(10**8):08d}", 10, ["zh-Hant-TW"]),
    ("Singapore", None, "SG", 1.2897, 103.8501, lambda r: "+659" + f"{r.randrange(10**7):07d}", 8, ["en", "zh-Hans-SG"]),
    ("London", None, "GB", 51.5085, -0.1257, lambda r: "+447700900" + f"{r.randrange(1000):03d}", 8, ["en"]),
    ("New York City", None, "US", 40.7143, -74.006, lambda r: "+121255501" + f"{r.randrange(100):02d}", 8, ["en"]),
    ("Sydney", None, "AU", -33.8679, 151.2073, lambda r: "+61491570" + f"{r.randrange(1000):03d}", 6, ["en"]),
]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高梁郑谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余杜叶程魏苏吕丁任沈"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英",
         "霞", "平", "刚", "桂英", "婷", "雪", "慧", "晨", "欣怡", "子涵", "梓萱", "浩然", "宇轩", "思远", "嘉欣", "家豪", "詠詩", "志明"]
EN_FIRST = ["Olivia", "Amelia", "Isla", "Ava", "Noah", "Oliver", "George", "Leo", "Mia", "Grace", "Ethan", "Chloe", "Lucas", "Ruby"]
EN_LAST = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright", "Chan", "Wong", "Lee", "Tan", "Ng", "Lim"]
TAGS = ["skincare", "makeup", "fragrance", "vip", "newsletter"]
TIERS = ["bronze", "silver", "gold"]


def openid(rng):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "o" + "".join(rng.choice(alphabet) for _ in range(27))


def tags(rng):
    chosen = {t for t in TAGS if rng.random() < 0.25}
    if rng.random() < 0.75:
        chosen.add("skincare")
    return sorted(chosen)


def base(rng, serial):
    return {
        "external_id": f"crm-{serial:05d}",
        "openid": openid(rng),
        "tags": tags(rng),
        "attrs": {"tier": rng.choice(TIERS)},
    }


def main():
    rng = random.Random(SEED)
    members = []
    serial = 1
    for name_en, name_zh, province_zh, lat, lon, prefixes, count, langs in MAINLAND:
        for _ in range(count):
            member = base(rng, serial)
            serial += 1
            member["name"] = rng.choice(SURNAMES) + rng.choice(GIVEN)
            member["phone"] = "+86" + rng.choice(prefixes) + f"{rng.randrange(10**4):04d}"
            mode = rng.random()
            if mode < 0.6:  # stated city, Chinese or English, sometimes with its province
                member["city"] = name_zh if rng.random() < 0.6 else name_en
                if name_en == "Suzhou" or rng.random() < 0.3:
                    member["province"] = province_zh
            elif mode < 0.9:  # only the phone number
                pass
            else:  # GPS coordinates from the app, a few km from the centre
                member["lat"] = round(lat + rng.uniform(-0.05, 0.05), 5)
                member["lon"] = round(lon + rng.uniform(-0.05, 0.05), 5)
            if langs and rng.random() < 0.3:
                member["lang"] = rng.choice(langs)
            members.append(member)
    for name_en, name_zh, country, lat, lon, phone, count, langs in ABROAD:
        for _ in range(count):
            member = base(rng, serial)
            serial += 1
            chinese = country in ("HK", "TW") or (country == "SG" and rng.random() < 0.5)
            if chinese:
                member["name"] = rng.choice(SURNAMES) + rng.choice(GIVEN)
            else:
                member["name"] = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
            member["phone"] = phone(rng)
            member["city"] = name_zh if name_zh and rng.random() < 0.5 else name_en
            if rng.random() < 0.5:
                member["lang"] = rng.choice(langs)
            members.append(member)
    # Members who left no usable location: counted as unresolved, never sent at a guess.
    for _ in range(6):
        member = base(rng, serial)
        serial += 1
        member["name"] = rng.choice(SURNAMES) + rng.choice(GIVEN)
        members.append(member)
    # A few members who unsubscribed.
    for member in rng.sample(members, 5):
        member["opted_out_at"] = "2027-06-0%dT09:00:00Z" % rng.randrange(1, 10)
    # Opt-ins for the weekly digest, drawn from their own stream so the fields
    # above stay as they were.
    optin = random.Random(SEED + 1)
    for member in members:
        if optin.random() < 0.4:
            member["tags"] = sorted(member["tags"] + ["digest-optin"])
    for member in members:
        sys.stdout.write(json.dumps(member, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
