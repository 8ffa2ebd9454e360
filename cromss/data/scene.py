"""The latent world of the synthetic data: land cover, its phenology, and what S1 and S2 see.

Each scene starts from a latent fine land-cover map with spatial structure (Voronoi field parcels,
forest blobs, lakes with marsh rims, a meandering river, towns with a road grid, bare and snowy
high ground, coasts). The DW, OSM and DFC2020 classes are fixed mappings of the fine classes. S2
L1C reflectance mixes per-class endmember spectra by a seasonal vegetation fraction (green-up,
harvest, snow in winter) and adds clouds; S1 VV/VH backscatter is per class in dB with multiplicative
gamma speckle. The DFC2020-like sets come from a shifted (semi-arid) climate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import norm

# --- the latent fine classes and their fixed mappings --------------------------------------------

FINE_CLASSES = (
    "lake", "river", "broadleaf forest", "conifer forest", "grassland", "cropland", "orchard",
    "shrubland", "marsh", "coastal marsh", "residential", "industrial", "road", "park",
    "bare rock", "quarry", "glacier", "savanna",
)
(LAKE, RIVER, BROADLEAF, CONIFER, GRASS, CROP, ORCHARD, SHRUB, MARSH, COASTAL, RESIDENTIAL,
 INDUSTRIAL, ROAD, PARK, ROCK, QUARRY, GLACIER, SAVANNA) = range(len(FINE_CLASSES))

FINE_TO_DW = np.array([0, 0, 1, 1, 2, 4, 1, 5, 3, 3, 6, 6, 6, 2, 7, 7, 8, 2], np.uint8)
"""Fine class -> DW index 0..8 (orchards are trees, parks and savanna are grass for DW)."""
FINE_TO_OSM = np.array([9, 9, 3, 3, 7, 2, 8, 11, 12, 13, 1, 4, 4, 5, 10, 6, 10, 11], np.uint8)
"""Fine class -> OSM raster code 1..13 (0 = background is added where OSM is unmapped)."""
FINE_TO_DFC = np.array([10, 10, 1, 1, 4, 6, 6, 2, 5, 5, 7, 7, 7, 4, 9, 9, 8, 3], np.uint8)
"""Fine class -> DFC2020 raster code 1..10."""
DW_SNOW = 8

# --- spectra (13 L1C bands, TOA reflectance x 10000) --------------------------------------------

VEG = np.array([1100, 750, 800, 450, 1050, 2300, 2900, 3100, 3250, 950, 15, 1700, 850], float)
SOIL = np.array([1500, 1350, 1500, 1800, 2000, 2200, 2350, 2450, 2550, 800, 20, 3100, 2500], float)
WATER = np.array([1300, 1000, 800, 550, 450, 350, 320, 280, 250, 120, 5, 150, 100], float)
URBAN = np.array([1700, 1650, 1650, 1750, 1850, 1950, 2050, 2150, 2200, 700, 20, 2500, 2200], float)
ASPHALT = np.array([1450, 1250, 1150, 1150, 1200, 1250, 1300, 1350, 1400, 500, 15, 1500, 1350], float)
SNOW = np.array([6500, 7200, 7000, 6900, 6900, 6700, 6500, 6300, 6100, 2600, 50, 900, 700], float)
STONE = np.array([1600, 1500, 1600, 1800, 1950, 2050, 2150, 2250, 2300, 750, 20, 2700, 2300], float)
CLOUD = np.array([6000, 6200, 6000, 6100, 6200, 6300, 6300, 6400, 6300, 3200, 450, 4800, 3600], float)
VISIBLE = np.array([1, 1, 1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0.3, 0.3])  # weight of the visible part

# fine class -> (vegetation fraction per season, vegetation NIR gain, vegetation visible gain,
#                background endmember, background gain)
CLASS_SPECTRA: dict[int, tuple[tuple[float, ...], float, float, np.ndarray, float]] = {
    LAKE: ((0, 0, 0, 0), 1.0, 1.0, WATER, 1.0),
    RIVER: ((0, 0, 0, 0), 1.0, 1.0, WATER * 0.85 + SOIL * 0.15, 1.0),
    BROADLEAF: ((0.35, 0.55, 0.95, 0.8), 1.0, 0.8, SOIL, 0.6),
    CONIFER: ((0.8, 0.85, 0.9, 0.9), 0.7, 0.7, SOIL, 0.5),
    GRASS: ((0.45, 0.75, 0.85, 0.65), 0.95, 1.05, SOIL, 1.0),
    CROP: ((0.05, 0.3, 0.9, 0.15), 1.05, 1.1, SOIL, 1.05),
    ORCHARD: ((0.3, 0.6, 0.85, 0.7), 0.9, 0.9, SOIL, 0.9),
    SHRUB: ((0.35, 0.45, 0.55, 0.5), 0.85, 0.9, SOIL, 1.0),
    MARSH: ((0.35, 0.6, 0.75, 0.6), 0.9, 0.95, WATER, 1.0),
    COASTAL: ((0.25, 0.4, 0.55, 0.45), 0.85, 0.95, WATER, 1.1),
    RESIDENTIAL: ((0.15, 0.25, 0.3, 0.25), 0.9, 1.0, URBAN, 1.0),
    INDUSTRIAL: ((0.05, 0.08, 0.1, 0.08), 0.9, 1.0, URBAN, 1.15),
    ROAD: ((0.1, 0.12, 0.15, 0.12), 0.9, 1.0, ASPHALT, 1.0),
    PARK: ((0.5, 0.8, 0.9, 0.7), 0.95, 1.0, SOIL, 1.0),
    ROCK: ((0, 0, 0.03, 0.02), 0.8, 1.0, STONE, 1.0),
    QUARRY: ((0, 0, 0, 0), 1.0, 1.0, SOIL, 1.3),
    GLACIER: ((0, 0, 0, 0), 1.0, 1.0, SNOW * 0.9 + STONE * 0.1, 1.0),
    SAVANNA: ((0.25, 0.35, 0.55, 0.3), 0.85, 1.0, SOIL, 1.1),
}
CROP_WINTER_SOWN = (0.35, 0.8, 0.5, 0.05)  # winter cereals: green in spring, harvested in summer

# fine class -> S1 (VV, VH) in dB on bare ground (vf 0) and under full vegetation (vf 1)
CLASS_BACKSCATTER: dict[int, tuple[float, float, float, float]] = {
    LAKE: (-21, -28, -21, -28), RIVER: (-19, -27, -19, -27),
    BROADLEAF: (-9, -15.5, -7.5, -12.8), CONIFER: (-8, -13.5, -7.5, -12.8),
    GRASS: (-12.5, -21, -10.5, -17.5), CROP: (-12, -21, -9, -15),
    ORCHARD: (-10.5, -18, -8.5, -14), SHRUB: (-11, -19, -9.5, -15.5),
    MARSH: (-7, -18, -5.5, -15), COASTAL: (-9, -20, -7, -17),
    RESIDENTIAL: (-4, -11, -4, -11), INDUSTRIAL: (-2.5, -10, -2.5, -10),
    ROAD: (-15, -23, -15, -23), PARK: (-11, -18.5, -9.5, -16),
    ROCK: (-9, -17, -9, -17), QUARRY: (-11, -19, -11, -19),
    GLACIER: (-13, -21, -13, -21), SAVANNA: (-12.5, -20, -10.5, -17),
}
S1_LOOKS = 4.4  # equivalent number of looks of IW GRDH


@dataclass(frozen=True)
class Climate:
    """A region: where it lies, what grows there, and how its surfaces look."""

    name: str
    lat: tuple[float, float]
    lon: tuple[float, float]
    parcel_uses: dict[int, float]  # fine class -> share of the farmland parcels
    forest: float  # share of the land under forest blobs
    lakes: float  # share of the land under lakes
    p_town: float
    p_mountain: float
    p_cold_winter: float  # chance that a winter scene is snow-covered in the lowlands
    p_coast: float
    vegetation_gain: float  # scales every vegetation fraction
    season_shift: int  # phenology offset in seasons (another hemisphere / wet season)
    soil: np.ndarray
    s1_offset_db: float  # drier soils backscatter less


TEMPERATE = Climate(
    name="temperate", lat=(44.0, 56.0), lon=(-2.0, 24.0),
    parcel_uses={CROP: 0.45, GRASS: 0.3, ORCHARD: 0.07, SHRUB: 0.08, BROADLEAF: 0.1},
    forest=0.25, lakes=0.05, p_town=0.45, p_mountain=0.2, p_cold_winter=0.25, p_coast=0.08,
    vegetation_gain=1.0, season_shift=0, soil=SOIL, s1_offset_db=0.0)
SEMI_ARID = Climate(
    name="semi-arid", lat=(-34.0, -22.0), lon=(18.0, 32.0),
    parcel_uses={SAVANNA: 0.15, SHRUB: 0.3, CROP: 0.3, GRASS: 0.18, ORCHARD: 0.07},
    forest=0.08, lakes=0.02, p_town=0.35, p_mountain=0.3, p_cold_winter=0.0, p_coast=0.1,
    vegetation_gain=0.7, season_shift=2, s1_offset_db=-1.5,
    soil=np.array([1700, 1600, 1900, 2400, 2600, 2800, 2900, 3000, 3100, 900, 25, 3800, 3200],
                  float))


# --- scene structure ----------------------------------------------------------------------------

def smooth_field(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """A zero-mean, unit-variance random field with correlation length ``scale`` pixels."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=scale, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def voronoi_parcels(rng: np.random.Generator, size: int, parcel_px: float) -> np.ndarray:
    """Parcel id per pixel: the nearest of randomly placed seeds (a Voronoi tessellation)."""
    count = max(2, int(round((size / parcel_px) ** 2)))
    seeds = np.ones((size, size), bool)
    seeds[rng.integers(0, size, count), rng.integers(0, size, count)] = False
    _, (rows, cols) = ndimage.distance_transform_edt(seeds, return_indices=True)
    return rows * size + cols


def _rotated_coords(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates centred on the scene and rotated by a random angle."""
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def land_cover(rng: np.random.Generator, size: int, climate: Climate
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The latent fine map, the parcel ids and the elevation field of one scene."""
    parcels = voronoi_parcels(rng, size, parcel_px=rng.uniform(10, 22))
    _, parcel_index = np.unique(parcels, return_inverse=True)
    parcel_index = parcel_index.reshape(size, size)
    uses = np.array(list(climate.parcel_uses))
    shares = np.array(list(climate.parcel_uses.values()))
    fine = uses[rng.choice(len(uses), parcel_index.max() + 1, p=shares / shares.sum())][parcel_index]

    mountainous = rng.random() < climate.p_mountain
    elevation = smooth_field(rng, size, size / 5) * (1.0 if mountainous else 0.3)
    if mountainous:
        elevation = elevation + 1.5 * _rotated_coords(rng, size)[0] / size
    conifer_zone = elevation > (0.3 if mountainous else 1.2)
    forest = smooth_field(rng, size, size / 10) > _quantile_threshold(climate.forest)
    fine[forest] = np.where(conifer_zone | (rng.random() < 0.3), CONIFER, BROADLEAF)[forest]
    if mountainous:
        fine[elevation > 0.9] = ROCK
        fine[elevation > 1.6] = GLACIER
    if rng.random() < 0.15:
        fine[smooth_field(rng, size, 3) > 2.2] = QUARRY
    if rng.random() < climate.p_town:
        _add_town(rng, fine, parcel_index)
    moisture = smooth_field(rng, size, size / 8)
    lakes = (moisture > _quantile_threshold(climate.lakes)) & (elevation < 0.5)
    rim = (ndimage.distance_transform_edt(~lakes) <= rng.uniform(1, 4)) & ~lakes & (moisture > 0.3)
    fine[rim] = MARSH
    fine[lakes] = LAKE
    if rng.random() < 0.5:
        _add_river(rng, fine)
    for _ in range(rng.integers(0, 3)):
        u, v = _rotated_coords(rng, size)
        fine[np.abs(v - rng.uniform(-size / 2, size / 2)) <= 0.5] = ROAD
    if rng.random() < climate.p_coast:
        u, v = _rotated_coords(rng, size)
        shore = v - size * rng.uniform(0.1, 0.35) + 3 * smooth_field(rng, size, 4)
        fine[(shore > 0) & (shore <= rng.uniform(1, 5))] = COASTAL
        fine[shore <= 0] = LAKE
    return fine.astype(np.uint8), parcel_index, elevation


def _quantile_threshold(share: float) -> float:
    """The level a unit Gaussian field exceeds on about ``share`` of the pixels."""
    return float(norm.isf(min(max(share, 1e-6), 1 - 1e-6)))


def _add_town(rng: np.random.Generator, fine: np.ndarray, parcel_index: np.ndarray) -> None:
    """A town: residential blocks on a road grid, industrial parcels and parks, in place."""
    size = fine.shape[0]
    centre = rng.uniform(0.15, 0.85, 2) * size
    radius = rng.uniform(0.12, 0.35) * size * (1 + 0.25 * smooth_field(rng, size, 6))
    y, x = np.mgrid[:size, :size]
    town = np.hypot(y - centre[0], x - centre[1]) < radius
    fine[town] = RESIDENTIAL
    in_town = np.unique(parcel_index[town])
    for parcel in in_town[rng.random(in_town.size) < 0.2]:
        fine[(parcel_index == parcel) & town] = INDUSTRIAL
    for parcel in in_town[rng.random(in_town.size) < 0.1]:
        fine[(parcel_index == parcel) & town] = PARK
    u, v = _rotated_coords(rng, size)
    spacing = rng.uniform(7, 12)
    grid = (np.mod(u, spacing) < 1) | (np.mod(v, spacing) < 1)
    fine[grid & town] = ROAD


def _add_river(rng: np.random.Generator, fine: np.ndarray) -> None:
    """A meandering river across the scene, with marshy banks now and then, in place."""
    size = fine.shape[0]
    u, v = _rotated_coords(rng, size)
    centre = (rng.uniform(-0.3, 0.3) * size
              + rng.uniform(0.02, 0.12) * size * np.sin(2 * np.pi * u / rng.uniform(0.5, 1.5) / size
                                                    + rng.uniform(0, 2 * np.pi)))
    distance = np.abs(v - centre)
    width = rng.uniform(0.8, 2.5)
    if rng.random() < 0.4:
        fine[distance < width + rng.uniform(1, 3)] = MARSH
    fine[distance < width] = RIVER


def snow_cover(rng: np.random.Generator, elevation: np.ndarray, season: int, climate: Climate,
               cold_winter: bool) -> np.ndarray:
    """Where snow lies in one season: high ground in winter and spring, lowlands in cold winters."""
    season = (season + climate.season_shift) % 4
    snow = np.zeros(elevation.shape, bool)
    if season == 0:
        snow |= elevation > 0.7
        if cold_winter:
            snow |= smooth_field(rng, elevation.shape[0], 8) > -0.6
    elif season == 1:
        snow |= elevation > 1.1
    return snow


# --- sensors ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    """One acquisition of one scene: what the sensors and a perfect DW see."""

    dw_truth: np.ndarray  # (H, W) true DW class this season (snow included)
    s2: np.ndarray  # (13, H, W) float reflectance x 10000 on the 10 m grid
    s1: np.ndarray  # (2, H, W) float32 dB, NaN where no data
    cloud: np.ndarray  # (H, W) cloud opacity 0..1


def vegetation_fraction(rng: np.random.Generator, fine: np.ndarray, parcel_index: np.ndarray,
                        season: int, climate: Climate) -> np.ndarray:
    """Per-pixel vegetation fraction: the class phenology with per-parcel variation."""
    phase = (season + climate.season_shift) % 4
    table = np.array([CLASS_SPECTRA[c][0][phase] for c in range(len(FINE_CLASSES))])
    vf = table[fine]
    n_parcels = parcel_index.max() + 1
    winter_sown = (rng.random(n_parcels) < 0.4)[parcel_index] & (fine == CROP)
    vf = np.where(winter_sown, CROP_WINTER_SOWN[phase], vf)
    vf = vf + rng.uniform(-0.12, 0.12, n_parcels)[parcel_index] * (vf > 0)
    return np.clip(vf * climate.vegetation_gain, 0, 1)


def s2_reflectance(rng: np.random.Generator, fine: np.ndarray, vf: np.ndarray, snow: np.ndarray,
                   cloud: np.ndarray, climate: Climate) -> np.ndarray:
    """S2 L1C reflectance (13, H, W) from endmember mixing, snow, texture and clouds."""
    n = len(FINE_CLASSES)
    nir_gain = np.array([CLASS_SPECTRA[c][1] for c in range(n)])[fine]
    vis_gain = np.array([CLASS_SPECTRA[c][2] for c in range(n)])[fine]
    background = np.stack([_background(c, climate) for c in range(n)])[fine]  # (H, W, 13)
    veg_gain = vis_gain[..., None] * VISIBLE + nir_gain[..., None] * (1 - VISIBLE)
    ground = vf[..., None] * VEG * veg_gain + (1 - vf[..., None]) * background
    ground *= 1 + 0.03 * rng.standard_normal(fine.shape)[..., None]
    ground = np.where(snow[..., None], 0.85 * SNOW + 0.15 * ground, ground)
    shadow = np.roll(cloud, shift=tuple(rng.integers(3, 8, 2)), axis=(0, 1)) * (1 - cloud)
    ground *= 1 - 0.5 * shadow[..., None]
    toa = (1 - cloud[..., None]) * ground + cloud[..., None] * CLOUD
    toa *= 1 + 0.01 * rng.standard_normal(toa.shape)
    return np.clip(toa, 1, 20000).transpose(2, 0, 1)


def _background(fine_class: int, climate: Climate) -> np.ndarray:
    material, gain = CLASS_SPECTRA[fine_class][3], CLASS_SPECTRA[fine_class][4]
    return (climate.soil if material is SOIL else material) * gain


def s1_backscatter(rng: np.random.Generator, fine: np.ndarray, vf: np.ndarray, snow: np.ndarray,
                   elevation: np.ndarray, season: int, climate: Climate) -> np.ndarray:
    """S1 VV/VH (2, H, W) in dB: class backscatter, terrain, wind on water, gamma speckle."""
    table = np.array([CLASS_BACKSCATTER[c] for c in range(len(FINE_CLASSES))])[fine]  # (H, W, 4)
    db = np.stack([table[..., 0] + (table[..., 2] - table[..., 0]) * vf,
                   table[..., 1] + (table[..., 3] - table[..., 1]) * vf])
    db += climate.s1_offset_db
    water = np.isin(fine, (LAKE, RIVER))
    wind = rng.uniform(0, 6)
    db += np.array([wind, wind / 2])[:, None, None] * water
    wet_snow = snow & ((season + climate.season_shift) % 4 == 1)
    db -= 4.0 * wet_snow
    slope = np.gradient(elevation, axis=1) * elevation.shape[0] / 4
    db += slope
    linear = 10 ** (db / 10) * rng.gamma(S1_LOOKS, 1 / S1_LOOKS, db.shape)
    s1 = (10 * np.log10(np.maximum(linear, 1e-5))).astype(np.float32)
    if rng.random() < 0.05:  # a no-data strip at the swath border
        s1[:, :, : rng.integers(1, max(2, fine.shape[1] // 6))] = np.nan
    return s1


def cloud_opacity(rng: np.random.Generator, size: int, cloud_fraction: float) -> np.ndarray:
    """Cloud opacity 0..1; a share ``cloud_fraction`` of the scenes has clouds."""
    if rng.random() >= cloud_fraction:
        return np.zeros((size, size))
    cover = rng.uniform(0.05, 0.35)
    field = smooth_field(rng, size, rng.uniform(3, 8))
    return np.clip((field - _quantile_threshold(cover)) * 2.5 + 0.5, 0, 1)


def observe(rng: np.random.Generator, fine: np.ndarray, parcel_index: np.ndarray,
            elevation: np.ndarray, season: int, climate: Climate, cold_winter: bool,
            cloud_fraction: float) -> Scene:
    """What S1, S2 and a perfect DW see of one scene in one season."""
    snow = snow_cover(rng, elevation, season, climate, cold_winter) & ~np.isin(fine, (RIVER,))
    dw_truth = np.where(snow, DW_SNOW, FINE_TO_DW[fine]).astype(np.uint8)
    vf = vegetation_fraction(rng, fine, parcel_index, season, climate)
    cloud = cloud_opacity(rng, fine.shape[0], cloud_fraction)
    return Scene(dw_truth=dw_truth,
                 s2=s2_reflectance(rng, fine, vf, snow, cloud, climate),
                 s1=s1_backscatter(rng, fine, vf, snow, elevation, season, climate), cloud=cloud)
