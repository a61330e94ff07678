"""Printed characters rendered from installed fonts: thousands of classes of real glyphs.

Each class is one character (e.g. a CJK ideograph), each example one font's rendering of
it: a small grey image (ink 255 on 0, cropped to its ink, centred and scaled to fit with a
small margin). Validation and test images come from *held-out fonts*: no design of theirs
is seen in training, so a score measures reading a new typeface, not recall.

How the data stays honest:

* Coverage comes from the font's own data (fontTools): a character counts as drawn only if
  the face's character map lists it *and* its glyph has an outline (TrueType contours or a
  CFF charstring that draws). Some fonts list characters they do not draw, and some draw an
  empty box for a missing glyph, so the rendered picture never decides coverage.
* Every face renders a fixed set of :data:`PROBES` probe characters. Faces whose renders are
  identical on more than half of the probes both draw are *clones* (TTC regions, renamed
  copies) and render once. Clones and faces of one family name (weights, widths) form one
  *design*: the unit that ``min_train_fonts`` counts and that is held out. Each clone
  group of a design gives one image per character.
* A design holding a validation, test or style face (``style_fonts``: a second held-out
  group of distant styles, see :data:`STYLE_FONTS`) is held out; a training design with a face
  that renders more than :data:`MAX_SHARED_PROBES` probes (nearly, :data:`NEAR`) like a
  held-out face is left out; a training image identical to a held-out image of its class,
  or repeating another image of its class, is dropped.
* Faces Pillow cannot render (FreeType errors such as "invalid opcode") and placeholder
  fonts (one picture for many characters) are skipped with a warning.

Scans and renders are cached on disk (see :func:`load_glyphs`), so a second run reads
arrays instead of fonts. Debian packages with about 65 CJK designs: :data:`APT_PACKAGES`.

Modules: :mod:`~hpn.data.glyphs.characters` (character specs),
:mod:`~hpn.data.glyphs.fonts` (font files, faces, coverage from outlines),
:mod:`~hpn.data.glyphs.designs` (probe renders, clones and designs, held-out checks),
:mod:`~hpn.data.glyphs.render` (rendering, worker processes, the cache),
:mod:`~hpn.data.glyphs.augment` (training augmentation, degraded renders) and
:mod:`~hpn.data.glyphs.source` (:func:`load_glyphs`).
"""

from hpn.data.glyphs.augment import GlyphAugment, ScanAugment, degrade_images, random_affine
from hpn.data.glyphs.characters import CHARACTER_SETS, parse_characters
from hpn.data.glyphs.designs import MAX_SHARED_PROBES, NEAR, PROBE_SIZE, PROBES, group_faces
from hpn.data.glyphs.fonts import (
    APT_PACKAGES,
    FONT_DIRS,
    FONT_SUFFIXES,
    charstring_draws,
    find_font_files,
)
from hpn.data.glyphs.render import PARALLEL_MIN_GLYPHS, default_cache_dir, render_glyph
from hpn.data.glyphs.source import HELD_OUT_FONTS, STYLE_FONTS, TEST_GROUPS, load_glyphs

__all__ = [
    "APT_PACKAGES",
    "CHARACTER_SETS",
    "FONT_DIRS",
    "FONT_SUFFIXES",
    "HELD_OUT_FONTS",
    "MAX_SHARED_PROBES",
    "NEAR",
    "PARALLEL_MIN_GLYPHS",
    "PROBES",
    "PROBE_SIZE",
    "STYLE_FONTS",
    "TEST_GROUPS",
    "GlyphAugment",
    "ScanAugment",
    "charstring_draws",
    "default_cache_dir",
    "degrade_images",
    "find_font_files",
    "group_faces",
    "load_glyphs",
    "parse_characters",
    "random_affine",
    "render_glyph",
]
