"""Places the directory knows: Tajikistan's regions and some districts, and countries abroad.

Data, not code: codes are ISO 3166-2 for regions (ISO 3166-1 alpha-2 for a country abroad);
districts are `<region>-<three letters>`. Another country adds its own rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    code: str
    name: str
    kind: str  # "region", "district" or "country"
    country: str
    region_code: str
    latitude: float | None = None
    longitude: float | None = None


PLACES: tuple[Place, ...] = (
    Place("TJ-DU", "Dushanbe", "region", "TJ", "TJ-DU", 38.56, 68.77),
    Place("TJ-SU", "Sughd", "region", "TJ", "TJ-SU", 40.28, 69.62),
    Place("TJ-KT", "Khatlon", "region", "TJ", "TJ-KT", 37.84, 68.78),
    Place("TJ-GB", "Gorno-Badakhshan", "region", "TJ", "TJ-GB", 37.49, 71.55),
    Place("TJ-RA", "Districts of Republican Subordination", "region", "TJ", "TJ-RA", 38.55, 69.0),
    Place("TJ-DU-SHO", "Shohmansur, Dushanbe", "district", "TJ", "TJ-DU", 38.58, 68.80),
    Place("TJ-DU-SIN", "Sino, Dushanbe", "district", "TJ", "TJ-DU", 38.55, 68.72),
    Place("TJ-SU-KHU", "Khujand", "district", "TJ", "TJ-SU", 40.28, 69.62),
    Place("TJ-SU-IST", "Istaravshan", "district", "TJ", "TJ-SU", 39.91, 69.00),
    Place("TJ-KT-BOK", "Bokhtar", "district", "TJ", "TJ-KT", 37.84, 68.78),
    Place("TJ-KT-KUL", "Kulob", "district", "TJ", "TJ-KT", 37.91, 69.78),
    Place("TJ-GB-KHO", "Khorog", "district", "TJ", "TJ-GB", 37.49, 71.55),
    Place("TJ-RA-VAH", "Vahdat", "district", "TJ", "TJ-RA", 38.56, 69.02),
    Place("RU", "Russia", "country", "RU", "RU", 55.75, 37.62),
    Place("KZ", "Kazakhstan", "country", "KZ", "KZ", 43.24, 76.89),
    Place("TR", "Turkey", "country", "TR", "TR", 41.01, 28.98),
    Place("KR", "Korea", "country", "KR", "KR", 37.57, 126.98),
    Place("PL", "Poland", "country", "PL", "PL", 52.23, 21.01),
)

# Regions that share a border: a provider next door is better than one across the country.
NEIGHBOURS: dict[str, frozenset[str]] = {
    "TJ-DU": frozenset({"TJ-RA"}),
    "TJ-RA": frozenset({"TJ-DU", "TJ-SU", "TJ-KT", "TJ-GB"}),
    "TJ-SU": frozenset({"TJ-RA"}),
    "TJ-KT": frozenset({"TJ-RA", "TJ-GB"}),
    "TJ-GB": frozenset({"TJ-RA", "TJ-KT"}),
    "RU": frozenset({"KZ"}),
    "KZ": frozenset({"RU"}),
}

BY_CODE: dict[str, Place] = {place.code: place for place in PLACES}


def region_of(code: str | None) -> tuple[str | None, str | None]:
    """(region, district) of a place code; an unknown code is taken as a region."""
    if code is None:
        return None, None
    place = BY_CODE.get(code)
    if place is None:
        return code, None
    if place.kind == "district":
        return place.region_code, place.code
    return place.region_code, None
