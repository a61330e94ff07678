"""The glyphs source on fonts a pip-only machine has: matplotlib's DejaVu, STIX and Computer
Modern fonts (cut down to ASCII so that scans and saves are fast), and tiny fonts built here."""

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
pytest.importorskip("fontTools")
matplotlib = pytest.importorskip("matplotlib")

from fontTools import subset  # noqa: E402
from fontTools.fontBuilder import FontBuilder  # noqa: E402
from fontTools.pens.t2CharStringPen import T2CharStringPen  # noqa: E402
from fontTools.pens.ttGlyphPen import TTGlyphPen  # noqa: E402
from fontTools.ttLib import TTFont  # noqa: E402
from fontTools.ttLib.tables._g_l_y_f import Glyph  # noqa: E402

from hpn.data import glyphs  # noqa: E402
from hpn.data.glyphs import (  # noqa: E402
    GlyphAugment,
    ScanAugment,
    degrade_images,
    group_faces,
    load_glyphs,
    parse_characters,
)
from hpn.data.registry import load_data  # noqa: E402

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
# file -> family: 7 type designs (DejaVu Sans, Serif and STIX in two weights each)
SOURCES = {
    "DejaVuSans.ttf": "DejaVu Sans",
    "DejaVuSans-Bold.ttf": "DejaVu Sans",
    "DejaVuSansMono.ttf": "DejaVu Sans Mono",
    "DejaVuSerif.ttf": "DejaVu Serif",
    "DejaVuSerif-Bold.ttf": "DejaVu Serif",
    "STIXGeneral.ttf": "STIXGeneral",
    "STIXGeneralBol.ttf": "STIXGeneral",
    "cmr10.ttf": "cmr10",
    "cmss10.ttf": "cmss10",
    "cmtt10.ttf": "cmtt10",
}
LETTERS = "A-Z,a-z"
UPPER = [chr(c) for c in range(ord("A"), ord("Z") + 1)]


@pytest.fixture(scope="module")
def fonts(tmp_path_factory) -> Path:
    """The SOURCES cut down to printable ASCII, in a folder of their own."""
    folder = tmp_path_factory.mktemp("fonts")
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    for name in SOURCES:
        subset_font(MPL_FONTS / name, range(0x20, 0x7F)).save(folder / name)
    return folder


def subset_font(path: Path, unicodes: Iterable[int]) -> TTFont:
    """The font at ``path`` cut down to ``unicodes``, with all its names."""
    font = TTFont(path)
    subsetter = subset.Subsetter(subset.Options(name_IDs=["*"]))
    subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)
    return font


def folder_with(tmp_path: Path, fonts: Path, drop=(), **extra: TTFont) -> Path:
    """A copy of the font folder without ``drop``, plus ``extra`` fonts (file stem -> font)."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    for path in fonts.iterdir():
        if path.name not in drop:
            shutil.copy(path, folder / path.name)
    for stem, font in extra.items():
        font.save(folder / f"{stem}.ttf")
    return folder


def renamed(font: TTFont, family: str) -> TTFont:
    for record in font["name"].names:
        if record.nameID in (1, 4, 16, 21):
            record.string = family
    return font


def images_by_class(split) -> list[tuple[int, bytes]]:
    pairs = zip(split.targets["label"].tolist(), split.inputs.numpy(), strict=True)
    return sorted((label, image.tobytes()) for label, image in pairs)


def load(folder: Path, cache: Path, **options):
    settings = dict(
        characters=LETTERS,
        num_classes=10,
        val_fonts=["STIXGeneral"],
        test_fonts=["DejaVu Serif"],
        min_train_fonts=3,
        font_dirs=[folder],
        cache_dir=cache,
        workers=1,
    )
    return load_glyphs(**{**settings, **options})


# --------------------------------------------------------------------------- characters


def test_parse_characters(tmp_path):
    assert len(parse_characters("cjk")) == 20992 and parse_characters("CJK")[0] == "\u4e00"
    hangul = parse_characters("hangul")
    assert len(hangul) == 11172 and (hangul[0], hangul[-1]) == ("\uac00", "\ud7a3")
    assert "".join(parse_characters("U+0041-U+0043, x-z, 0")) == "0ABCxyz"
    path = tmp_path / "chars.txt"
    path.write_text("丁 七\n丁三\n", encoding="utf-8")
    assert parse_characters(path) == ["丁", "七", "三"]
    for bad in ("latin", "Z-A", "U+XYZ", "", str(tmp_path / "missing.txt")):
        with pytest.raises(ValueError, match="is not 'cjk', 'hangul'"):
            parse_characters(bad)


# --------------------------------------------------------------------------- coverage


def built_font(path: Path, cff: bool) -> Path:
    """A font whose cmap lists A and B; A has an outline, B an empty one; .notdef (drawn
    for anything else, e.g. C) is a box."""

    def box(pen):
        pen.moveTo((100, 0))
        pen.lineTo((100, 700))
        pen.lineTo((500, 700))
        pen.lineTo((500, 0))
        pen.closePath()

    builder = FontBuilder(1000, isTTF=not cff)
    builder.setupGlyphOrder([".notdef", "A", "B"])
    builder.setupCharacterMap({ord("A"): "A", ord("B"): "B"})
    if cff:
        pens = {name: T2CharStringPen(600, None) for name in (".notdef", "A", "B")}
        box(pens[".notdef"])
        box(pens["A"])
        glyph_data = {name: pen.getCharString() for name, pen in pens.items()}
        builder.setupCFF("Built", {"FullName": "Built"}, glyph_data, {})
    else:
        pens = {name: TTGlyphPen(None) for name in (".notdef", "A", "B")}
        box(pens[".notdef"])
        box(pens["A"])
        builder.setupGlyf({name: pen.glyph() for name, pen in pens.items()})
    builder.setupHorizontalMetrics({name: (600, 100) for name in (".notdef", "A", "B")})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Built", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(path)
    return path


@pytest.mark.parametrize("cff", [False, True], ids=["glyf", "cff"])
def test_coverage_needs_an_outline(tmp_path, cff):
    path = built_font(tmp_path / ("built.otf" if cff else "built.ttf"), cff)
    (face,) = glyphs.fonts._scan_file((str(path), "ABC"))
    assert face["family"] == "Built" and face["drawn"] == ["A"]
    # the picture would have said otherwise: C draws .notdef's box
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), 64)
    assert glyphs.render_glyph(font, "C", 32) is not None


def test_an_empty_outline_gives_no_image(tmp_path, fonts):
    hollow = TTFont(fonts / "cmtt10.ttf")
    name = hollow.getBestCmap()[ord("B")]
    hollow["glyf"][name] = Glyph()  # the cmap still lists B
    folder = folder_with(tmp_path, fonts, drop={"cmtt10.ttf"}, cmtt10=hollow)
    data = load(folder, tmp_path / "cache", characters="A-C", num_classes=None)
    per_class = torch.bincount(data.train.targets["label"], minlength=3).tolist()
    assert data.class_names == ["A", "B", "C"] and per_class[1] == per_class[0] - 1
    assert data.info["removed"]["empty"] == 0  # never rendered, not rendered and dropped
    assert (data.train.inputs.flatten(1).amax(1) > 0).all()


# --------------------------------------------------------------------------- designs


def test_group_faces():
    h = np.array([[1, 2, 3, 0], [1, 2, 9, 0], [1, 8, 5, 7], [0, 0, 0, 6]], dtype=np.uint64)
    # faces 0-1 agree on 2 of 3 shared probes (clones), 1-2 on 1 of 3 (not)
    assert group_faces(h).tolist() == [0, 0, 1, 2]
    assert group_faces(h, ["a", "b", "b", "c"]).tolist() == [0, 0, 0, 1]


def test_a_renamed_copy_is_one_design(tmp_path, fonts):
    plain = load(fonts, tmp_path / "plain")
    clone = renamed(TTFont(fonts / "cmss10.ttf"), "Clone Sans")
    data = load(folder_with(tmp_path, fonts, clone_sans=clone), tmp_path / "cache")
    train, before = data.info["designs"]["train"], plain.info["designs"]["train"]
    # one design, named after its first face: clone_sans.ttf sorts before cmss10.ttf
    assert train == {("Clone Sans" if k == "cmss10" else k): v for k, v in before.items()}
    assert data.info["fonts"]["faces_used"] == plain.info["fonts"]["faces_used"] + 1
    assert images_by_class(data.train) == images_by_class(plain.train)
    # weights of a family are one design with one rendering each
    assert train["DejaVu Sans"] == 2 and data.info["designs"]["test"] == {"DejaVu Serif": 2}


def mixed(fonts: Path, keep: str, family: str) -> TTFont:
    """DejaVu Serif with every letter but ``keep`` replaced by DejaVu Sans Mono's (a
    glyph copied into another font can render differently: its hinting runs on that
    font's control values; so the copies here keep the held-out font's own)."""
    font, mono = (
        renamed(TTFont(fonts / "DejaVuSerif.ttf"), family),
        TTFont(fonts / "DejaVuSansMono.ttf"),
    )
    cmap, mono_cmap = font.getBestCmap(), mono.getBestCmap()
    for char in parse_characters(LETTERS):
        if char not in keep:
            font["glyf"][cmap[ord(char)]] = mono["glyf"][mono_cmap[ord(char)]]
    return font


def test_held_out_fonts_stay_out_of_training(tmp_path, fonts):
    copy = renamed(TTFont(fonts / "DejaVuSerif.ttf"), "Copy Serif")
    partial = mixed(fonts, "ABCDEFGHIJ", "Mixed Mono")  # 10 of 52 letters of the test font
    folder = folder_with(tmp_path, fonts, copy_serif=copy, mixed_mono=partial)
    data = load(folder, tmp_path / "cache", num_classes=None)
    designs = data.info["designs"]
    assert set(designs["train"]) == {"DejaVu Sans", "DejaVu Sans Mono", "cmr10", "cmss10", "cmtt10"}
    assert designs["test"] == {"DejaVu Serif": 2}  # the copy joined its design
    (why,) = designs["excluded"]
    assert (
        why.startswith("Mixed Mono") and "renders 10 of 52 probes like held-out DejaVu Serif" in why
    )
    train = {x.numpy().tobytes() for x in data.train.inputs}
    held = {x.numpy().tobytes() for x in torch.cat([data.val.inputs, data.test.inputs])}
    assert not train & held


def test_a_few_copied_glyphs_are_dropped(tmp_path, fonts):
    assert glyphs.MAX_SHARED_PROBES >= 2  # so the font stays and its two copies go
    folder = folder_with(tmp_path, fonts, mostly_mono=mixed(fonts, "AB", "Mostly Mono"))
    data = load(folder, tmp_path / "cache", num_classes=None)
    assert "Mostly Mono" in data.info["designs"]["train"] and data.info["designs"]["excluded"] == []
    assert data.info["removed"]["copies_of_held_out"] == 2
    train = {x.numpy().tobytes() for x in data.train.inputs}
    assert not train & {x.numpy().tobytes() for x in data.test.inputs}


def test_the_style_group_stays_out_of_training_and_is_the_second_test(tmp_path, fonts):
    # cmtt10 cut down to the capitals: a style font that draws half the candidates
    folder = folder_with(
        tmp_path,
        fonts,
        drop=["cmtt10.ttf"],
        cmtt10=subset_font(fonts / "cmtt10.ttf", map(ord, UPPER)),
    )
    cache = tmp_path / "cache"
    plain = load(folder, cache, num_classes=None)
    fonts_test = load(folder, cache, num_classes=None, style_fonts=["cmtt10"])
    styles_test = load(folder, cache, num_classes=None, style_fonts=["cmtt10"], test_group="styles")
    designs = styles_test.info["designs"]
    assert designs["style"] == {"cmtt10": 1} and "cmtt10" not in designs["train"]
    assert "cmtt10" in plain.info["designs"]["train"]
    # the style fonts do not limit the candidates, and the group tested changes only the
    # test split
    assert styles_test.info["candidates"] == fonts_test.info["candidates"] == 52
    assert styles_test.class_names == fonts_test.class_names == plain.class_names
    assert torch.equal(styles_test.train.inputs, fonts_test.train.inputs)
    assert torch.equal(styles_test.val.inputs, fonts_test.val.inputs)
    assert torch.equal(fonts_test.test.inputs, plain.test.inputs)
    assert len(fonts_test.train) == len(plain.train) - 26
    # the style test: one image per capital the style font draws, none seen in training
    labels = styles_test.test.targets["label"].tolist()
    assert sorted(styles_test.class_names[i] for i in labels) == UPPER
    assert styles_test.info["style"] == {"images": 26, "classes": 26}
    train = {x.numpy().tobytes() for x in styles_test.train.inputs}
    assert not train & {x.numpy().tobytes() for x in styles_test.test.inputs}
    assert styles_test.info["test_group"] == "styles" and plain.info["style_fonts"] == []


def test_default_style_fonts_exist_for_ideographs_only(tmp_path, fonts):
    assert "LXGW WenKai" in glyphs.STYLE_FONTS["cjk"]
    with pytest.raises(ValueError, match="have no default style_fonts"):
        load(fonts, tmp_path, style_fonts="default")


# --------------------------------------------------------------------------- the splits


def test_shapes_names_and_info(tmp_path, fonts):
    data = load(fonts, tmp_path / "cache", size=24)
    assert data.task == "classification" and data.input_shape == (1, 24, 24)
    assert data.num_classes == 10 and len(data.class_names) == 10
    assert data.class_names == sorted(data.class_names)
    for split in (data.train, data.val, data.test):
        assert split.inputs.dtype == torch.uint8 and split.inputs.shape[1:] == (1, 24, 24)
        labels = split.targets["label"]
        assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
        x, _ = split[0]
        assert x.dtype == torch.float32 and 0.0 <= float(x.min()) < float(x.max()) <= 1.0
    # one image per rendering: 2 + 1 + 1 + 1 + 1 in training, 2 weights of each held-out font
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 20)
    info = data.info
    assert info["counts"] == {"train": 60, "val": 20, "test": 20}
    assert info["classes"] == "".join(data.class_names) and info["candidates"] == 52
    assert info["fonts"]["files"] == len(SOURCES) and info["fonts"]["faces"] == len(SOURCES)
    assert info["designs"]["val"] == {"STIXGeneral": 2}
    assert info["train_images_per_class"] == {"min": 6, "max": 6}
    assert not data.train.transform and info["augment"] is None


def test_same_seed_same_data(tmp_path, fonts):
    a = load(fonts, tmp_path / "a", seed=3)
    b = load(fonts, tmp_path / "b", seed=3)
    c = load(fonts, tmp_path / "a", seed=4)
    assert a.class_names == b.class_names != c.class_names
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).inputs, getattr(b, split).inputs)


def test_by_name_from_the_registry(tmp_path, fonts):
    data = load_data(
        "glyphs",
        characters="A-E",
        num_classes=3,
        val_fonts=["STIXGeneral"],
        test_fonts=["DejaVu Serif"],
        min_train_fonts=3,
        font_dirs=[str(fonts)],
        cache_dir=str(tmp_path),
        seed=1,
    )
    assert data.info["source"] == "glyphs" and data.num_classes == 3


# --------------------------------------------------------------------------- the cache


def test_second_call_reads_the_cache(tmp_path, fonts, monkeypatch):
    first = load(fonts, tmp_path)
    assert not first.info["cache"]["scan_hit"] and not first.info["render"]["cache_hit"]
    assert _cache_kinds(tmp_path) == ["render", "scan"]

    def no_rendering(task):
        raise AssertionError("rendered although cached")

    monkeypatch.setattr(glyphs.render, "_render_task", no_rendering)
    monkeypatch.setattr(glyphs.render, "_scan_file", no_rendering)
    second = load(fonts, tmp_path)
    assert second.info["cache"]["scan_hit"] and second.info["render"]["cache_hit"]
    assert torch.equal(first.train.inputs, second.train.inputs)
    assert torch.equal(first.test.targets["label"], second.test.targets["label"])


def test_the_cache_follows_the_fonts_and_size(tmp_path, fonts):
    folder = folder_with(tmp_path, fonts)
    load(folder, tmp_path / "cache")
    load(folder, tmp_path / "cache", size=16)  # new renders, same scan
    (folder / "cmr10.ttf").unlink()  # new fonts: new scan and renders
    load(folder, tmp_path / "cache", min_train_fonts=2)
    assert _cache_kinds(tmp_path / "cache") == ["render"] * 3 + ["scan"] * 2


def _cache_kinds(cache: Path) -> list[str]:
    """The kinds of the cache files, after checking no temporary file is left behind."""
    assert not list(cache.glob(".*.tmp"))
    return sorted(p.name.split("-")[0] for p in cache.glob("*.npz"))


def test_processes_render_what_one_process_renders(tmp_path, fonts, monkeypatch):
    monkeypatch.setattr(glyphs.render, "PARALLEL_MIN_GLYPHS", 0)
    one = load(fonts, tmp_path / "one", num_classes=None)
    two = load(fonts, tmp_path / "two", num_classes=None, workers=2)
    assert torch.equal(one.train.inputs, two.train.inputs)
    assert torch.equal(one.test.inputs, two.test.inputs)


# --------------------------------------------------------------------------- bad input


def test_no_fonts(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path, tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "apt-get install" in message and "fonts-noto-cjk" in message


def test_too_many_classes(tmp_path, fonts):
    with pytest.raises(ValueError, match=r"num_classes=60 .* the largest K available is 52$"):
        load(fonts, tmp_path, num_classes=60)


def test_characters_no_font_draws(tmp_path, fonts):
    path = tmp_path / "ideographs.txt"
    path.write_text("丁七", encoding="utf-8")
    with pytest.raises(ValueError, match=f"draws any character of '{path}'"):
        load(fonts, tmp_path / "cache", characters=str(path))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val_fonts": ["Nonesuch"]}, "val_fonts entry 'Nonesuch' matches no installed face"),
        ({"test_fonts": ["STIX"]}, "test font 'STIX' .* is the same design as a val font"),
        ({"val_fonts": None, "test_fonts": None}, "have no default held-out fonts"),
        ({"val_fonts": "STIXGeneral"}, "val_fonts must be a non-empty list"),
        ({"test_fonts": []}, "test_fonts must be a non-empty list"),
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"size": 4}, "size must be an int >= 8"),
        ({"min_train_fonts": 0}, "min_train_fonts must be an int >= 1"),
        ({"degrade": -1}, r"degrade must be a strength in \[0, 3\]"),
        ({"test_group": "styles"}, "test_group='styles' needs style_fonts"),
        ({"test_group": "both"}, "test_group must be one of fonts, styles, got 'both'"),
        ({"style_fonts": "cmtt10"}, "style_fonts must be a list of family-name substrings"),
        ({"style_fonts": ["Nonesuch"]}, "style_fonts entry 'Nonesuch' matches no installed"),
        ({"style_fonts": ["Serif"]}, "style font 'Serif' .* is the same design as a test font"),
    ],
)
def test_bad_options(tmp_path, fonts, options, message):
    with pytest.raises(ValueError, match=message):
        load(fonts, tmp_path, **options)


# --------------------------------------------------------------------------- augmentation


def test_degrade_is_seeded_and_keeps_shapes():
    x = (torch.rand(50, 1, 32, 32) > 0.7).to(torch.uint8) * 255
    a, b, c = (
        degrade_images(x, 1.0, seed=0),
        degrade_images(x, 1.0, seed=0),
        degrade_images(x, 1.0, seed=1),
    )
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert torch.equal(degrade_images(x, 0.0), x)
    # stronger degradation moves further from the clean image
    gap = [float((degrade_images(x, s, seed=0).float() - x.float()).abs().mean()) for s in (0.3, 2)]
    assert gap[0] < gap[1]


def test_degraded_evaluation_splits(tmp_path, fonts):
    clean = load(fonts, tmp_path)
    worn = load(fonts, tmp_path, degrade=1.0)
    again = load(fonts, tmp_path, degrade=1.0)
    assert torch.equal(worn.train.inputs, clean.train.inputs)
    assert not torch.equal(worn.test.inputs, clean.test.inputs)
    assert torch.equal(worn.test.inputs, again.test.inputs) and worn.info["degrade"] == 1.0


def test_augment_only_the_training_split(tmp_path, fonts):
    data = load(fonts, tmp_path, augment=True)
    assert isinstance(data.train.transform, GlyphAugment)
    assert data.val.transform is None and data.test.transform is None
    assert data.info["augment"].startswith("GlyphAugment(")
    torch.manual_seed(0)
    x, _ = data.train.get_batch(range(8))
    clean = data.train.inputs[:8].float() / 255
    assert x.shape == clean.shape and 0 <= float(x.min()) and float(x.max()) <= 1
    assert not torch.allclose(x, clean)
    torch.manual_seed(0)
    assert torch.equal(data.train.get_batch(range(8))[0], x)


def test_scan_augment_degrades_and_thresholds_training_items_only(tmp_path, fonts):
    data = load(fonts, tmp_path, augment="scan")
    assert isinstance(data.train.transform, ScanAugment) and data.test.transform is None
    assert data.info["augment"].startswith("ScanAugment(")
    x = data.train.inputs[:1].float()[0] / 255
    always = ScanAugment(scan=1.0, threshold=1.0, rotation=0, scale=0, shear=0, shift=0, stroke=0)
    torch.manual_seed(0)
    outs = [always(x) for _ in range(10)]
    assert all(o.shape == x.shape for o in outs)
    assert all(set(o.unique().tolist()) <= {0.0, 1.0} for o in outs)  # bilevel scans
    never = ScanAugment(scan=0.0, rotation=0, scale=0, shear=0, shift=0, stroke=0)
    assert torch.allclose(never(x), x, atol=1e-5)  # the identity affine map, nothing else
    grey = ScanAugment(scan=1.0, threshold=0.0, strength=1.0, stroke=0)
    torch.manual_seed(1)
    blurred = [grey(x) for _ in range(10)]
    assert sum(len(o.unique()) > 2 for o in blurred) >= 9  # blur, contrast and noise: grey
    with pytest.raises(ValueError, match="augment must be true, false or 'scan', got 'scans'"):
        load(fonts, tmp_path, augment="scans")
