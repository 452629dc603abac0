"""The cards' metadata: the Hub's size categories and how a license is named."""

from __future__ import annotations

from types import SimpleNamespace

from distill.publish.cards import size_category


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_an_other_license_names_itself_as_the_hubs_card_spec_asks() -> None:
    import yaml
    from huggingface_hub import DatasetCard, ModelCard

    from distill.publish.cards import OTHER_LICENSE, license_meta, license_text
    from distill.publish.config import PublishConfig

    other = PublishConfig()
    meta = license_meta(other)
    front = "---\n" + yaml.safe_dump(meta) + "---\n# card\n"
    for card in (ModelCard(front), DatasetCard(front)):
        assert card.data.license == "other"
        assert card.data.license_name == "documents-license"
        assert card.data.license_link == OTHER_LICENSE
    recipe = SimpleNamespace(name="acme", publish=other)
    text = license_text(recipe)  # type: ignore[arg-type]
    assert text is not None and "`acme`" in text
    named = PublishConfig(license="cc-by-4.0")
    assert license_meta(named) == {"license": "cc-by-4.0"}
    assert license_text(SimpleNamespace(name="acme", publish=named)) is None  # type: ignore[arg-type]
    linked = PublishConfig(license_name="acme-eula", license_link="https://acme.example/eula")
    assert license_meta(linked)["license_link"] == "https://acme.example/eula"
    assert license_text(SimpleNamespace(name="acme", publish=linked)) is None  # type: ignore[arg-type]
