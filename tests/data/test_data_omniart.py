import pytest
import torch

from hpn.data.folders import ImageFileDataset
from hpn.data.omniart import load_omniart, read_omniart_csv

Image = pytest.importorskip("PIL.Image")

STYLES = {"impressionism": 1880.0, "baroque": 1650.0, "cubism": 1912.0}


def make_omniart(tmp_path, per_style=5, extra_lines=()):
    images = tmp_path / "images"
    lines = ["image_path,style,year,title"]
    for style, base_year in STYLES.items():
        for i in range(per_style):
            rel = f"{style}/{i}.jpg"
            (images / style).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 9), (i * 40, 100, 200)).save(images / rel)
            lines.append(f'{rel},{style},{base_year + i},"A title, with a comma"')
    lines.extend(extra_lines)
    csv_path = tmp_path / "omniart.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, images


def test_multitask_targets(tmp_path):
    csv_path, images = make_omniart(tmp_path)
    splits = load_omniart(csv_path, images, image_size=8, val_fraction=0.25, test_fraction=0.2)
    assert splits.task == "multitask" and splits.input_shape == (3, 8, 8)
    assert splits.class_names == ["baroque", "cubism", "impressionism"] and splits.num_classes == 3
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)
    assert torch.bincount(splits.test.targets["label"]).tolist() == [1, 1, 1]
    assert isinstance(splits.train, ImageFileDataset)
    seen = set()
    for part in (splits.train, splits.val, splits.test):
        for i in range(len(part)):
            x, target = part[i]
            assert x.shape == (3, 8, 8) and x.dtype == torch.float32
            assert target["label"].dtype == torch.int64 and target["value"].dtype == torch.float32
            style = splits.class_names[int(target["label"])]
            index = int(part.paths[i].rsplit("/", 1)[-1].split(".")[0])
            assert f"{style}/" in part.paths[i].replace("\\", "/")
            assert float(target["value"]) == STYLES[style] + index
            seen.add(part.paths[i])
    assert len(seen) == 15
    lo, hi = splits.info["value_range"]
    years = splits.train.targets["value"]
    assert lo == float(years.min()) and hi == float(years.max())


def test_splits_are_seeded(tmp_path):
    csv_path, images = make_omniart(tmp_path, per_style=10)
    a, b = load_omniart(csv_path, images, seed=0), load_omniart(csv_path, images, seed=0)
    c = load_omniart(csv_path, images, seed=1)
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert a.test.paths == c.test.paths  # the test split follows test_seed
    assert load_omniart(csv_path, images, test_seed=3).test.paths != a.test.paths


def test_csv_rows_and_bom(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffyear, style ,image_path\n1900.5,x,a.png\n-200,y,b.png\n".encode())
    assert read_omniart_csv(path) == [("a.png", "x", 1900.5), ("b.png", "y", -200.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image_path,style\na.png,x\n", r"a\.csv: missing column\(s\) \['year'\]"),
        ("path,style,date\n", r"missing column\(s\) \['image_path', 'year'\]"),
        (
            "image_path,style,year\na.png,x,1900\nb.png,y,nan\n",
            r"a\.csv:3: year 'nan' is not finite",
        ),
        ("image_path,style,year\na.png,x,inf\n", r"a\.csv:2: year 'inf' is not finite"),
        ("image_path,style,year\na.png,x,c. 1890\n", r"a\.csv:2: year 'c\. 1890' is not a number"),
        ("image_path,style,year\na.png,,1900\n", r"a\.csv:2: empty or missing field"),
        ("image_path,style,year\na.png,x\n", r"a\.csv:2: empty or missing field"),
        ("image_path,style,year\n", r"a\.csv: no data rows"),
        ("", r"a\.csv: missing column"),
    ],
)
def test_bad_csv_named(tmp_path, text, message):
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_omniart_csv(path)


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"image_path,style,year\n\xe9t\xe9.png,x,1900\n")
    with pytest.raises(ValueError, match=r"latin\.csv: not a readable UTF-8 CSV"):
        read_omniart_csv(path)


def test_missing_images_named(tmp_path):
    csv_path, images = make_omniart(
        tmp_path, extra_lines=["gone/one.jpg,baroque,1700", "gone/two.jpg,cubism,1915"]
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"2 image\(s\) listed in .*omniart\.csv missing: .*one\.jpg, .*two\.jpg",
    ):
        load_omniart(csv_path, images)
    with pytest.raises(FileNotFoundError, match="OmniArt image folder not found: .*nowhere"):
        load_omniart(csv_path, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="OmniArt CSV not found: .*absent.csv"):
        load_omniart(tmp_path / "absent.csv", images)


def test_too_few_rows(tmp_path):
    csv_path, images = make_omniart(tmp_path, per_style=1)
    lines = csv_path.read_text().splitlines()[:2]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"omniart\.csv: 1 rows leave 1 for training"):
        load_omniart(csv_path, images)
