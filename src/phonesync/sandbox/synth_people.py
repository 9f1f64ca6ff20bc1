"""Synthetic people for the sandboxes: NIKs, names, addresses, phone numbers, FHIR Patients.

Everything is invented: names are random combinations of common given and family names, NIKs are
built by the rules of domain.md §2 (`PP RR SS DDMMYY NNNN`, women's day + 40, serial from 0001) and
are unique per person. All randomness comes from the `random.Random` handed in, so a seed gives the
same people every time.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, Literal, TypeVar

Sex = Literal["male", "female"]
Json = dict[str, Any]
T = TypeVar("T")

IHS_SYSTEM = "https://fhir.kemkes.go.id/id/ihs-number"
NIK_IBU_SYSTEM = "https://fhir.kemkes.go.id/id/nik-ibu"
PATIENT_PROFILE = "https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"
SD = "https://fhir.kemkes.go.id/r4/StructureDefinition/"
# Extensions no national profile defines: a sync must carry them through untouched.
LOCAL_SD = "https://fhir.puskesmas.example.id/StructureDefinition/"

#: (code, name, capital, number of kabupaten, number of kota, population in millions).
#: Kabupaten are regency codes 01.., kota 71..; Papua 91–96 included (python-stdnum lacks some).
PROVINCES: tuple[tuple[str, str, str, int, int, float], ...] = (
    ("11", "Aceh", "Banda Aceh", 18, 5, 5.4),
    ("12", "Sumatera Utara", "Medan", 25, 8, 15.1),
    ("13", "Sumatera Barat", "Padang", 12, 7, 5.6),
    ("14", "Riau", "Pekanbaru", 10, 2, 6.6),
    ("15", "Jambi", "Jambi", 9, 2, 3.6),
    ("16", "Sumatera Selatan", "Palembang", 13, 4, 8.6),
    ("17", "Bengkulu", "Bengkulu", 9, 1, 2.0),
    ("18", "Lampung", "Bandar Lampung", 13, 2, 9.0),
    ("19", "Kepulauan Bangka Belitung", "Pangkalpinang", 6, 1, 1.5),
    ("21", "Kepulauan Riau", "Tanjungpinang", 5, 2, 2.1),
    ("31", "DKI Jakarta", "Jakarta", 1, 5, 10.7),
    ("32", "Jawa Barat", "Bandung", 18, 9, 49.4),
    ("33", "Jawa Tengah", "Semarang", 29, 6, 37.0),
    ("34", "DI Yogyakarta", "Yogyakarta", 4, 1, 3.7),
    ("35", "Jawa Timur", "Surabaya", 29, 9, 41.1),
    ("36", "Banten", "Serang", 4, 4, 12.3),
    ("51", "Bali", "Denpasar", 8, 1, 4.4),
    ("52", "Nusa Tenggara Barat", "Mataram", 8, 2, 5.5),
    ("53", "Nusa Tenggara Timur", "Kupang", 21, 1, 5.5),
    ("61", "Kalimantan Barat", "Pontianak", 12, 2, 5.5),
    ("62", "Kalimantan Tengah", "Palangka Raya", 13, 1, 2.7),
    ("63", "Kalimantan Selatan", "Banjarmasin", 11, 2, 4.1),
    ("64", "Kalimantan Timur", "Samarinda", 7, 3, 3.9),
    ("65", "Kalimantan Utara", "Tanjung Selor", 4, 1, 0.7),
    ("71", "Sulawesi Utara", "Manado", 11, 4, 2.6),
    ("72", "Sulawesi Tengah", "Palu", 12, 1, 3.0),
    ("73", "Sulawesi Selatan", "Makassar", 21, 3, 9.2),
    ("74", "Sulawesi Tenggara", "Kendari", 15, 2, 2.7),
    ("75", "Gorontalo", "Gorontalo", 5, 1, 1.2),
    ("76", "Sulawesi Barat", "Mamuju", 6, 0, 1.4),
    ("81", "Maluku", "Ambon", 9, 2, 1.9),
    ("82", "Maluku Utara", "Sofifi", 8, 2, 1.3),
    ("91", "Papua", "Jayapura", 8, 1, 1.0),
    ("92", "Papua Barat", "Manokwari", 7, 0, 0.6),
    ("93", "Papua Selatan", "Merauke", 4, 0, 0.5),
    ("94", "Papua Tengah", "Nabire", 8, 0, 1.4),
    ("95", "Papua Pegunungan", "Wamena", 8, 0, 1.4),
    ("96", "Papua Barat Daya", "Sorong", 5, 1, 0.6),
)
PROVINCE_CODES = tuple(p[0] for p in PROVINCES)
_PROVINCE = {p[0]: p for p in PROVINCES}
_PROVINCE_CUM = tuple(accumulate(p[5] for p in PROVINCES))  # by population


def _words(text: str) -> tuple[str, ...]:
    """`"Budi I_Wayan"` → `("Budi", "I Wayan")`: compact name tables."""
    return tuple(w.replace("_", " ") for w in text.split())


# fmt: off
#: Name tables per tradition: (male given names, female given names, second names, P(second)).
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], float]] = {
    "javanese": (
        _words("Budi Agus Joko Slamet Bambang Wahyu Heru Eko Dwi Bayu Rudi Sigit Teguh Yudi Hadi "
               "Gatot Bagus Aris Wawan Tri"),
        _words("Sri Siti Endang Ratna Dewi Puji Yuliani Tutik Sumarni Rini Lestari Wulan Indah "
               "Kartini Sumiati Suparmi Nanik Erna"),
        _words("Santoso Prasetyo Wibowo Nugroho Setiawan Susanto Hartono Raharjo Purnomo Widodo "
               "Saputra Wahyuni Rahayu Handayani Wulandari Ningsih Setyowati Kusumawati Utomo"),
        0.8),
    "sundanese": (
        _words("Asep Ujang Dadang Cecep Iwan Yayan Dede Ade Entis Dudi Engkos"),
        _words("Euis Neneng Imas Cucu Iis Enung Lilis Nining Ai Yeni Elis"),
        _words("Suhendar Sunarya Hidayat Kurnia Permana Supriatna Rusmana Kusnadi Sumarna "
               "Nurhayati Komalasari Rohaeti Mulyana Setiadi"),
        0.75),
    "batak": (
        _words("Togar Pardamean Binsar Martua Tigor Parulian Marihot Sahat Jhonson Rudolf Poltak"),
        _words("Rosmawati Lasmaria Tiurma Debora Rotua Nurmala Mariani Hotmaida Romauli Sondang"),
        _words("Simanjuntak Siregar Nasution Hutapea Sitorus Panjaitan Situmorang Simbolon Pardede "
               "Sinaga Lubis Harahap Manurung Tambunan Silalahi Hutagalung Napitupulu Sihombing"),
        1.0),
    "minang": (
        _words("Rizal Zulkifli Syafrizal Afrizal Yusrizal Hendri Erman Fadli Irwan"),
        _words("Yusnidar Nurhasanah Rosnelly Yenni Desmawati Elfi Fitriani Zulfa Yulnita"),
        _words("Effendi Syamsuddin Amir Zainal Chaniago Piliang Tanjung Koto Sikumbang Rasyid "
               "Datuak_Sati"),
        0.7),
    "bugis": (
        _words("Andi Baso Syamsul Ambo Darwis Haeruddin Muhlis Irfan Akbar"),
        _words("Andi Besse Hasnawati Nurhaedah Sitti Hasmiah Rosdiana Nurlina"),
        _words("Mappaseng Parenrengi Tahir Lamba Hafid Rahim Sulaiman Latif Pabittei Tenriajeng "
               "Sompa Daeng_Tompo"),
        0.9),
    "papuan": (
        _words("Yohanes Markus Petrus Yakobus Otto Frans Yulius Natan Nikolas Elias Ruben"),
        _words("Maria Yuliana Agustina Ester Selvina Martha Yohana Fransina Herlina Naomi"),
        _words("Wenda Kogoya Tabuni Wonda Yikwa Rumbiak Mandowen Rumbewas Kambu Sawaki Wanimbo "
               "Murib Enumbi Kossay Ayomi Mambor Karubaba Worabai"),
        1.0),
    "chinese": (
        _words("Hendra Andy Wilson Kevin Stefanus Yohan Rudy Sugianto Hartanto Jimmy Tan_Ah_Kiong"),
        _words("Lily Melinda Susan Fransiska Cindy Angeline Lenny Vivian Meiliana Lim_Mei_Hwa"),
        _words("Wijaya Halim Gunawan Santoso Kurniawan Tjandra Setiadi Salim Tanuwidjaja Gozali "
               "Hartono Susanto Liem Tanujaya"),
        0.85),
    "arabic": (
        _words("Muhammad Ahmad Abdullah Umar Hasan Husein Ali Ibrahim Yusuf Faisal Rizki Fauzan"),
        _words("Fatimah Aisyah Khadijah Zainab Maryam Salma Nur Halimah Syarifah Siti_Aisyah"),
        _words("Alatas Assegaf Al_Habsyi Bawazier Alkaff Bin_Thalib Alaydrus Basalamah Shahab "
               "Bafadal Fauzi Hidayat Ramadhan Fadillah Hakim Aziz Nurhaliza Maulida"),
        0.85),
    "balinese": (
        _words("I_Wayan I_Made I_Nyoman I_Ketut I_Putu I_Gede I_Komang"),
        _words("Ni_Wayan Ni_Made Ni_Luh Ni_Ketut Ni_Putu Ni_Komang Ni_Nyoman"),
        _words("Sudarma Suarta Artini Sukerti Ariani Budiarta Astawa Sutami Darmayasa Yuliantari"),
        1.0),
    "single": (  # one name only, common among older Javanese
        _words("Sutrisno Paijo Sumarno Wagimin Ponijan Karto Suparno Tukimin"),
        _words("Suharti Suwarni Tukiyem Ngatini Karsiyah Sarinah Kasmirah Painem"),
        (),
        0.0),
}
# fmt: on
_GROUPS = tuple(NAMES)
#: Second names only women carry (`Budi Wulandari` would look wrong).
_FEMALE_SECOND = frozenset(_words(
    "Wahyuni Rahayu Handayani Wulandari Ningsih Setyowati Kusumawati Nurhayati Komalasari Rohaeti "
    "Nurhaliza Maulida Artini Sukerti Ariani Sutami Yuliantari"
))  # fmt: skip
_MALE_SECOND = {g: tuple(n for n in v[2] if n not in _FEMALE_SECOND) for g, v in NAMES.items()}
_GROUP_CUM = (35, 47, 55, 61, 67, 70, 76, 88, 91, 100)  # javanese 35 %, sundanese 12 %, …
#: The tradition most names in a province come from (the rest follow the national mix).
_REGIONAL_GROUP = {
    "11": "arabic", "12": "batak", "13": "minang", "32": "sundanese", "33": "javanese",
    "34": "javanese", "35": "javanese", "36": "sundanese", "51": "balinese", "73": "bugis",
    "76": "bugis", "91": "papuan", "92": "papuan", "93": "papuan", "94": "papuan", "95": "papuan",
    "96": "papuan",
}  # fmt: skip

STREETS = (
    "Jl. Merdeka", "Jl. Sudirman", "Jl. Diponegoro", "Jl. Ahmad Yani", "Jl. Gajah Mada",
    "Jl. Pahlawan", "Jl. Kenanga", "Gg. Mawar", "Jl. Melati", "Jl. Cempaka", "Jl. Raya Pos",
    "Jl. Pemuda", "Jl. Veteran", "Jl. Kartini", "Perum Griya Asri Blok C", "Gg. Masjid",
    "Jl. Pasar Baru", "Jl. Pelabuhan", "Kompleks Bumi Indah", "Jl. Poros Desa",
)  # fmt: skip

#: Mobile prefixes after the trunk 0 (domain.md §3); numbers are portable, so no carrier logic.
MOBILE_PREFIXES = (
    "811", "812", "813", "821", "822", "823", "851", "852", "853", "814", "815", "816", "855",
    "856", "857", "858", "895", "896", "897", "898", "899", "817", "818", "819", "859", "877",
    "878", "879", "831", "832", "833", "838", "881", "882", "883", "887", "888", "889",
)  # fmt: skip
_LANDLINE_AREAS = ("21", "22", "24", "31", "61", "274", "361", "411", "967")
_SEXES: tuple[Sex, Sex] = ("male", "female")
_INDONESIAN = {"coding": [{"system": "urn:ietf:bcp:47", "code": "id-ID", "display": "Indonesian"}],
               "text": "Indonesian"}  # fmt: skip
_MARITAL = (("M", "Married"), ("S", "Never Married"), ("W", "Widowed"), ("D", "Divorced"))


# `Random.randint/choice/choices` make several Python-level calls each; these draw straight from
# `random()` (one C call) and keep 20,000 Patients + 20,000 rows well inside the time budget.
def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """One element, uniformly."""
    return seq[int(rng.random() * len(seq))]


def between(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high], uniformly."""
    return low + int(rng.random() * (high - low + 1))


def weighted(rng: random.Random, seq: Sequence[T], cum_weights: Sequence[float]) -> T:
    """One element by cumulative weights."""
    return seq[bisect.bisect(cum_weights, rng.random() * cum_weights[-1])]


@dataclass(frozen=True, slots=True)
class Person:
    """One invented resident: a NIK and the facts it encodes, a name and a home region."""

    nik: str
    sex: Sex
    birth: date
    name: str
    regency: str  # PPRR
    district: str  # PPRRSS


class NikFactory:
    """Makes people with unique, valid NIKs (serials count up per region and birth date)."""

    def __init__(self, rng: random.Random, business_date: date) -> None:
        self._rng = rng
        self._latest_birth = business_date - timedelta(days=1)
        self._serials: dict[str, int] = {}

    def person(self, province: str | None = None, sex: Sex | None = None) -> Person:
        """A new person; a given province/sex, or a population-weighted random one."""
        rng = self._rng
        regency, district = random_region(rng, province)
        sex = sex or ("female" if rng.random() < 0.5 else "male")
        birth = self._birth_date()
        day = birth.day + (40 if sex == "female" else 0)
        prefix = f"{district}{day:02d}{birth.month:02d}{birth.year % 100:02d}"
        # Serials are issued from 0001 per region and birth date; most people are among the first.
        serial = self._serials.get(prefix) or pick(rng, (0, 0, 0, 0, 1, 2, 4, 7))
        self._serials[prefix] = serial + 1
        name = make_name(rng, district[:2], sex)
        return Person(f"{prefix}{serial + 1:04d}", sex, birth, name, regency, district)

    def _birth_date(self) -> date:
        # 29 February is never drawn: whether `290200` is valid depends on a century no NIK states.
        rng = self._rng
        month = between(rng, 1, 12)
        day = between(rng, 1, 28 if month == 2 else (30 if month in (4, 6, 9, 11) else 31))
        born = date(between(rng, 1940, 2024), month, day)
        while born > self._latest_birth:
            born = born.replace(year=born.year - 1)
        return born


def random_region(rng: random.Random, province: str | None = None) -> tuple[str, str]:
    """(regency `PPRR`, district `PPRRSS`): kabupaten 01.., kota 71.., districts 01–24."""
    code = province or weighted(rng, PROVINCE_CODES, _PROVINCE_CUM)
    _, _, _, kabupaten, kota, _ = _PROVINCE[code]
    if kota and rng.random() < 0.3:
        regency = f"{code}{between(rng, 71, 70 + kota)}"
    else:
        regency = f"{code}{between(rng, 1, kabupaten):02d}"
    return regency, f"{regency}{between(rng, 1, 24):02d}"


def make_name(rng: random.Random, province: str, sex: Sex) -> str:
    """An invented name from the province's usual tradition (or the national mix)."""
    group = _REGIONAL_GROUP.get(province)
    if group is None or rng.random() < 0.35:
        group = weighted(rng, _GROUPS, _GROUP_CUM)
    male, female, family, p_family = NAMES[group]
    name = pick(rng, male if sex == "male" else female)
    family = _MALE_SECOND[group] if sex == "male" else family
    if family and rng.random() < p_family:
        name = f"{name} {pick(rng, family)}"
    return name.upper() if rng.random() < 0.3 else name  # Dukcapil records are often capitals


def sheet_name(rng: random.Random, name: str) -> str:
    """How a health worker types the name into the sheet."""
    return pick(rng, (name.title(), name.title(), name.lower(), name))


# --- phone numbers ----------------------------------------------------------------------------


def new_mobile(rng: random.Random) -> str:
    """A national-format Indonesian mobile number: `08` + prefix, 11–13 digits in all."""
    draw = rng.random()
    width = 7 if draw < 0.2 else (8 if draw < 0.8 else 9)  # digits after `08x`, 11–13 in all
    return f"0{pick(rng, MOBILE_PREFIXES)}{between(rng, 0, 10**width - 1):0{width}d}"


def grouped(national: str, sep: str = "-") -> str:
    """`0812-3456-7890` (or with another separator)."""
    return sep.join((national[:4], national[4:8], national[8:]))


def international(national: str, style: str = "plain") -> str:
    """`+6281234567890`; style `spaces` → `+62 812 3456 7890`, `dashes` → `+62 812-3456-7890`."""
    body = national[1:]
    if style == "spaces":
        return f"+62 {body[:3]} {body[3:7]} {body[7:]}"
    if style == "dashes":
        return f"+62 {body[:3]}-{body[3:7]}-{body[7:]}"
    return f"+62{body}"


def phone_key(value: str) -> str:
    """National digits (`0812…`) of a number written any common way; for comparisons only."""
    digits = re.sub(r"\D", "", value)
    if digits.startswith("62"):
        return "0" + digits[2:]
    return digits if digits.startswith("0") else "0" + digits


def landline(rng: random.Random) -> str:
    """A fixed-line number such as `021-5551234` (not a mobile number)."""
    area = pick(rng, _LANDLINE_AREAS)
    width = 9 - len(area)  # Jakarta `021-5551234`, Denpasar `0361-234567`
    return f"0{area}-{between(rng, 10 ** (width - 1), 10**width - 1)}"


# --- FHIR Patient -----------------------------------------------------------------------------

_MOBILE_STYLES: tuple[Callable[[str], str], ...] = (
    lambda n: n,
    lambda n: n,
    lambda n: n,
    international,
    lambda n: "62" + n[1:],
    grouped,
    lambda n: international(n, "dashes"),
    lambda n: grouped(n, " "),
)


def stored_mobile(rng: random.Random, national: str) -> str:
    """How a number already on a Patient is written: mostly SATUSEHAT's own `08…` style."""
    return pick(rng, _MOBILE_STYLES)(national)


def mobile_entry(value: str) -> Json:
    """A ContactPoint for a mobile number, the way SATUSEHAT's example stores one."""
    return {"system": "phone", "value": value, "use": "mobile"}


def existing_telecom(rng: random.Random, person: Person, national_mode: bool) -> list[Json]:
    """The telecom a Patient already has: mixed formats, sometimes email/home phone, often none."""
    out: list[Json] = []
    draw = rng.random()
    if draw < 0.62:
        entry = mobile_entry(stored_mobile(rng, new_mobile(rng)))
        if rng.random() < 0.05:
            entry["extension"] = [{"url": f"{LOCAL_SD}whatsapp", "valueBoolean": True}]
        if rng.random() < 0.08:
            entry = {"system": "phone", "value": entry["value"]}  # no `use` at all
        out.append(entry)
    elif draw < 0.66:
        ended = f"{between(rng, 2019, 2023)}-0{between(rng, 1, 9)}-1{between(rng, 0, 9)}"
        value = stored_mobile(rng, new_mobile(rng))
        out.append({"system": "phone", "value": value, "use": "old", "period": {"end": ended}})
    if rng.random() < 0.12:
        out.append({"system": "phone", "value": landline(rng), "use": "home"})
    if rng.random() < 0.22 or (national_mode and not out):
        local = re.sub(r"[^a-z]", "", person.name.lower())[:12] or "pasien"
        out.append({"system": "email", "value": f"{local}{between(rng, 1, 999)}@example.com",
                    "use": "home"})  # fmt: skip
    return out


def _address(rng: random.Random, person: Person) -> Json:
    # Most live where their NIK was issued; some have moved since.
    district = person.district if rng.random() < 0.9 else random_region(rng)[1]
    code = district[:2]
    admin = [
        {"url": "province", "valueCode": code},
        {"url": "city", "valueCode": district[:4]},
        {"url": "district", "valueCode": district},
        {"url": "village", "valueCode": f"{district}{pick(rng, (1, 2))}0{between(rng, 1, 20):02d}"},
        {"url": "rt", "valueCode": str(between(rng, 1, 15))},
        {"url": "rw", "valueCode": str(between(rng, 1, 12))},
    ]
    return {
        "use": "home",
        "line": [f"{pick(rng, STREETS)} No. {between(rng, 1, 250)}"],
        "city": _PROVINCE[code][2],
        "postalCode": str(between(rng, 10110, 99881)),
        "country": "ID",
        "extension": [{"url": f"{SD}administrativeCode", "extension": admin}],
    }


def _extensions(rng: random.Random, person: Person) -> list[Json]:
    born_in = _PROVINCE[person.nik[:2]][2]
    out: list[Json] = [
        {"url": f"{SD}birthPlace", "valueAddress": {"city": born_in, "country": "ID"}},
        {"url": f"{SD}citizenshipStatus", "valueCode": "WNI"},
    ]
    if rng.random() < 0.3:
        code = f"PKM-{between(rng, 1, 9999):04d}"
        out.append({"url": f"{LOCAL_SD}registrasi-puskesmas", "valueString": code})
    return out


def _contact(rng: random.Random, province: str) -> Json:
    relation = pick(rng, (("C", "Emergency Contact"), ("N", "Next-of-Kin")))
    return {
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                      "code": relation[0], "display": relation[1]}]}],
        "name": {"use": "official", "text": make_name(rng, province, pick(rng, _SEXES))},
        "telecom": [mobile_entry(new_mobile(rng))],
    }  # fmt: skip


def patient_resource(
    rng: random.Random, person: Person, pid: str, nik_system: str, national_mode: bool
) -> Json:
    """A SATUSEHAT-style Patient for `person`; gender and birthDate agree with the NIK."""
    patient: Json = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [PATIENT_PROFILE]},
        "identifier": [
            {"use": "official", "system": nik_system, "value": person.nik},
            {"use": "official", "system": IHS_SYSTEM, "value": pid},
        ],
        "active": True,
        "name": [{"use": "official", "text": person.name}],
        "telecom": existing_telecom(rng, person, national_mode),
        "gender": person.sex,
        "birthDate": person.birth.isoformat(),
        "deceasedBoolean": False,
        "address": [_address(rng, person)],
        "maritalStatus": _marital(rng, adult=person.birth.year < 2006),
        "multipleBirthBoolean": rng.random() < 0.02,
        "communication": [{"language": _INDONESIAN, "preferred": True}],
        "extension": _extensions(rng, person),
    }  # fmt: skip
    if not patient["telecom"]:
        del patient["telecom"]
    if rng.random() < 0.2:
        patient["contact"] = [_contact(rng, person.nik[:2])]
    return patient


def _marital(rng: random.Random, adult: bool) -> Json:
    code, display = weighted(rng, _MARITAL, (6, 9, 10, 11)) if adult else _MARITAL[1]
    system = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def newborn_resource(
    rng: random.Random, mother: Person, pid: str, born: date, national_mode: bool
) -> Json:
    """A newborn registered, as SATUSEHAT does, only under the mother's NIK (`nik-ibu`)."""
    sex: Sex = "female" if rng.random() < 0.5 else "male"
    baby = Person(mother.nik, sex, born, f"By. Ny. {mother.name}", mother.regency, mother.district)
    patient = patient_resource(rng, baby, pid, NIK_IBU_SYSTEM, national_mode)
    patient["identifier"][0]["use"] = "usual"
    return patient
