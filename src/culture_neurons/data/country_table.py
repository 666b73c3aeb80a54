"""The country table: every country and region the project knows, with its other spellings.

Also the paper's target list, BLEnD's 16 and the spellings only one benchmark uses. Looking names
up in these tables is :mod:`culture_neurons.data.countries`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    """A country or region as the project names it.

    Attributes:
        key: the canonical name, used as ``Example.group`` (``"UK"``, ``"South Korea"``).
        name: how it reads inside a sentence (``"the United Kingdom"``).
        option: how it reads as a stand-alone answer option (``"United Kingdom"``).
        aliases: other spellings that mean the same place.
        parent: for a region (Assam, West Java), the country it lies in.
    """

    key: str
    name: str
    option: str
    aliases: tuple[str, ...] = ()
    parent: str | None = None


def _c(
    key: str,
    name: str | None = None,
    option: str | None = None,
    aliases: tuple[str, ...] = (),
    parent: str | None = None,
) -> Country:
    name = name or key
    option = option or (name[4:] if name.startswith("the ") else name)
    return Country(key, name, option, aliases, parent)


# The paper's 8 target countries first, then the other BLEnD countries/regions, then the rest of
# the world (enough to cover CulturalBench, NormAd and WorldValuesBench).
COUNTRIES: tuple[Country, ...] = (
    _c("China", aliases=("PRC", "People's Republic of China", "CN", "Mainland China")),
    _c("Indonesia", aliases=("ID",)),
    _c("Iran", aliases=("IR", "Islamic Republic of Iran", "Iran, Islamic Republic of", "Persia")),
    _c("Mexico", aliases=("MX", "United Mexican States")),
    _c("South Korea", aliases=("KR", "Korea", "Republic of Korea", "Korea, Republic of", "Korea South", "S. Korea")),
    _c("Spain", aliases=("ES",)),
    _c(
        "UK",
        "the United Kingdom",
        aliases=(
            "United Kingdom",
            "GB",
            "Great Britain",
            "Britain",
            "U.K.",
            "United Kingdom of Great Britain and Northern Ireland",
            "England",
        ),
    ),
    _c(
        "USA",
        "the United States",
        aliases=("US", "U.S.", "U.S.A.", "United States", "United States of America", "America"),
    ),
    # The other BLEnD countries and regions.
    _c("Algeria", aliases=("DZ",)),
    _c("Assam", aliases=("AS",), parent="India"),
    _c("Azerbaijan", aliases=("AZ",)),
    _c("Ethiopia", aliases=("ET",)),
    _c("Greece", aliases=("GR",)),
    _c(
        "North Korea",
        aliases=("KP", "DPRK", "Democratic People's Republic of Korea", "Korea, Democratic People's Republic of"),
    ),
    _c("Northern Nigeria", aliases=("NG", "North Nigeria"), parent="Nigeria"),
    _c("West Java", aliases=("JB",), parent="Indonesia"),
    # Everyone else.
    _c("Afghanistan"),
    _c("Albania"),
    _c("Andorra"),
    _c("Angola"),
    _c("Antigua and Barbuda"),
    _c("Argentina"),
    _c("Armenia"),
    _c("Australia"),
    _c("Austria"),
    _c("Bahamas", "the Bahamas"),
    _c("Bahrain"),
    _c("Bangladesh"),
    _c("Barbados"),
    _c("Belarus"),
    _c("Belgium"),
    _c("Belize"),
    _c("Benin"),
    _c("Bhutan"),
    _c("Bolivia"),
    _c("Bosnia and Herzegovina", aliases=("Bosnia Herzegovina", "Bosnia")),
    _c("Botswana"),
    _c("Brazil"),
    _c("Brunei"),
    _c("Bulgaria"),
    _c("Burkina Faso"),
    _c("Burundi"),
    _c("Cambodia"),
    _c("Cameroon"),
    _c("Canada"),
    _c("Cape Verde", aliases=("Cabo Verde",)),
    _c("Central African Republic", "the Central African Republic"),
    _c("Chad"),
    _c("Chile"),
    _c("Colombia"),
    _c("Comoros"),
    _c("Republic of the Congo", aliases=("Congo", "Congo-Brazzaville")),
    _c("DR Congo", aliases=("Democratic Republic of the Congo", "DRC", "Congo-Kinshasa")),
    _c("Costa Rica"),
    _c("Croatia"),
    _c("Cuba"),
    _c("Cyprus"),
    _c("Czech Republic", "the Czech Republic", aliases=("Czechia",)),
    _c("Denmark"),
    _c("Djibouti"),
    _c("Dominica"),
    _c("Dominican Republic", "the Dominican Republic"),
    _c("Ecuador"),
    _c("Egypt"),
    _c("El Salvador"),
    _c("Equatorial Guinea"),
    _c("Eritrea"),
    _c("Estonia"),
    _c("Eswatini", aliases=("Swaziland",)),
    _c("Fiji"),
    _c("Finland"),
    _c("France"),
    _c("Gabon"),
    _c("Gambia", "the Gambia"),
    _c("Georgia"),
    _c("Germany"),
    _c("Ghana"),
    _c("Grenada"),
    _c("Guatemala"),
    _c("Guinea"),
    _c("Guinea-Bissau"),
    _c("Guyana"),
    _c("Haiti"),
    _c("Honduras"),
    _c("Hong Kong", aliases=("Hong Kong SAR", "Hong Kong SAR PRC", "HK")),
    _c("Hungary"),
    _c("Iceland"),
    _c("India"),
    _c("Iraq"),
    _c("Ireland", aliases=("Republic of Ireland",)),
    _c("Israel"),
    _c("Italy"),
    _c("Ivory Coast", aliases=("Cote d'Ivoire", "Côte d'Ivoire")),
    _c("Jamaica"),
    _c("Japan"),
    _c("Jordan"),
    _c("Kazakhstan"),
    _c("Kenya"),
    _c("Kiribati"),
    _c("Kosovo"),
    _c("Kuwait"),
    _c("Kyrgyzstan"),
    _c("Laos"),
    _c("Latvia"),
    _c("Lebanon"),
    _c("Lesotho"),
    _c("Liberia"),
    _c("Libya"),
    _c("Liechtenstein"),
    _c("Lithuania"),
    _c("Luxembourg"),
    _c("Macao", aliases=("Macau", "Macao SAR", "Macau SAR")),
    _c("Madagascar"),
    _c("Malawi"),
    _c("Malaysia", aliases=("Malasia",)),
    _c("Maldives", "the Maldives"),
    _c("Mali"),
    _c("Malta"),
    _c("Marshall Islands", "the Marshall Islands"),
    _c("Mauritania"),
    _c("Mauritius"),
    _c("Micronesia"),
    _c("Moldova"),
    _c("Monaco"),
    _c("Mongolia"),
    _c("Montenegro"),
    _c("Morocco"),
    _c("Mozambique"),
    _c("Myanmar", aliases=("Burma",)),
    _c("Namibia"),
    _c("Nauru"),
    _c("Nepal"),
    _c("Netherlands", "the Netherlands", aliases=("Holland",)),
    _c("New Zealand"),
    _c("Nicaragua"),
    _c("Niger"),
    _c("Nigeria"),
    _c("North Macedonia", aliases=("Macedonia",)),
    _c("Northern Ireland", parent="UK"),
    _c("Norway"),
    _c("Oman"),
    _c("Pakistan"),
    _c("Palau"),
    _c("Palestine", aliases=("Palestinian Territories", "State of Palestine")),
    _c("Panama"),
    _c("Papua New Guinea"),
    _c("Paraguay"),
    _c("Peru"),
    _c("Philippines", "the Philippines"),
    _c("Poland"),
    _c("Portugal"),
    _c("Puerto Rico"),
    _c("Qatar"),
    _c("Romania"),
    _c("Russia", aliases=("Russian Federation",)),
    _c("Rwanda"),
    _c("Saint Kitts and Nevis"),
    _c("Saint Lucia"),
    _c("Saint Vincent and the Grenadines"),
    _c("Samoa"),
    _c("San Marino"),
    _c("Sao Tome and Principe", aliases=("São Tomé and Príncipe",)),
    _c("Saudi Arabia"),
    _c("Scotland", parent="UK"),
    _c("Senegal"),
    _c("Serbia"),
    _c("Seychelles"),
    _c("Sierra Leone"),
    _c("Singapore"),
    _c("Slovakia"),
    _c("Slovenia"),
    _c("Solomon Islands", "the Solomon Islands"),
    _c("Somalia"),
    _c("South Africa"),
    _c("South Sudan"),
    _c("Sri Lanka"),
    _c("Sudan"),
    _c("Suriname"),
    _c("Sweden"),
    _c("Switzerland"),
    _c("Syria"),
    _c("Taiwan", aliases=("Taiwan ROC", "Republic of China")),
    _c("Tajikistan"),
    _c("Tanzania"),
    _c("Thailand"),
    _c("Timor-Leste", aliases=("East Timor",)),
    _c("Togo"),
    _c("Tonga"),
    _c("Trinidad and Tobago"),
    _c("Tunisia"),
    _c("Turkey", aliases=("Türkiye", "Turkiye")),
    _c("Turkmenistan"),
    _c("Tuvalu"),
    _c("Uganda"),
    _c("Ukraine"),
    _c("United Arab Emirates", "the United Arab Emirates", aliases=("UAE",)),
    _c("Uruguay"),
    _c("Uzbekistan"),
    _c("Vanuatu"),
    _c("Vatican City", aliases=("Holy See",)),
    _c("Venezuela"),
    _c("Vietnam", aliases=("Viet Nam",)),
    _c("Wales", parent="UK"),
    _c("Yemen"),
    _c("Zambia"),
    _c("Zimbabwe"),
)

#: The paper's 8 target countries, in its order.
TARGET_COUNTRIES: tuple[str, ...] = ("China", "Indonesia", "Iran", "Mexico", "South Korea", "Spain", "UK", "USA")

#: The 16 countries/regions of BLEnD.
BLEND_COUNTRIES: tuple[str, ...] = TARGET_COUNTRIES + (
    "Algeria",
    "Assam",
    "Azerbaijan",
    "Ethiopia",
    "Greece",
    "North Korea",
    "Northern Nigeria",
    "West Java",
)

#: Spellings that only one benchmark uses (looked up before the global table). A benchmark whose
#: names are all in the global table needs no entry.
BENCHMARK_ALIASES: dict[str, dict[str, str]] = {
    # BLEnD file names and hub split codes.
    "blend": {
        "US": "USA",
        "UK": "UK",
        "South_Korea": "South Korea",
        "GB": "UK",
        "AS": "Assam",
        "JB": "West Java",
        "NG": "Northern Nigeria",
        "KP": "North Korea",
    },
    "culturalbench": {"United States": "USA", "United Kingdom": "UK"},
    "normad": {"united_states_of_america": "USA", "united_kingdom": "UK", "south_korea": "South Korea"},
    "worldvaluesbench": {"Great Britain": "UK", "United States": "USA"},
}
