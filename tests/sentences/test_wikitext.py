"""Wikitext -> paragraphs with exact link spans, on the real enwiki dump excerpts."""

from __future__ import annotations

import collections
import random
import re

import mwparserfromhell
import pytest

from mesed_build.sentences import wikitext as wt
from mesed_build.sentences.wikitext import Link, article_paragraphs
from mesed_build.wiki.source import link_target

# What must never survive into plain text.
LEFTOVER_MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|<ref|</ref|<!--|'''|\{\||^\|\}|\bthumb\|", re.IGNORECASE)
SKIPPED = {"see also", "references", "external links", "further reading", "notes", "bibliography", "sources"}


def assert_exact(paragraphs):
    for paragraph in paragraphs:
        text = paragraph.text
        assert text and text == text.strip() and "  " not in text and "\n" not in text
        assert not LEFTOVER_MARKUP.search(text), text
        previous_end = 0
        for link in paragraph.links:
            assert previous_end <= link.start < link.end <= len(text)
            assert text[link.start : link.end] == link.anchor
            assert link.anchor == link.anchor.strip()
            assert link_target(link.target) == link.target  # a normalised namespace-0 title
            previous_end = link.end


def test_every_link_span_is_exact_in_every_article(enwiki_paragraphs, table_markup):
    by_title, drops = enwiki_paragraphs
    links = 0
    for title, paragraphs in by_title.items():
        assert_exact(paragraphs)
        assert not any(p.section.casefold() in SKIPPED for p in paragraphs), title
        links += sum(len(p.links) for p in paragraphs)
    assert links > 20_000
    # the excerpt is well-formed wikitext: the only drops are links whose anchor renders empty
    assert set(drops) <= {wt.EMPTY_ANCHOR}
    for page in table_markup.values():
        assert_exact(article_paragraphs(page.text))


def test_anarchism_lead_with_refs_removed(enwiki_paragraphs):
    first = enwiki_paragraphs[0]["Anarchism"][0]
    assert first.section == ""
    assert first.text.startswith(
        "Anarchism is a political philosophy that advocates self-governed societies based on voluntary "
        "institutions. These are often described as stateless societies, although several authors have defined "
        "them more specifically as institutions based on non-hierarchical free associations. Anarchism considers "
        "the state to be undesirable, unnecessary, and harmful. While anti-statism is central,"
    )
    assert "Woodcock" not in first.text  # the text of the <ref>s after "stateless societies"
    assert [(link.anchor, link.target) for link in first.links[:7]] == [
        ("political philosophy", "Political philosophy"),
        ("self-governed", "Self-governance"),
        ("stateless societies", "Stateless society"),
        ("hierarchical", "Hierarchy"),
        ("free associations", "Free association (communism and anarchism)"),
        ("state", "State (polity)"),
        ("anti-statism", "Anti-statism"),
    ]
    assert first.links[0] == Link(15, 35, "Political philosophy", "political philosophy")


def test_link_trail_letters_join_the_anchor(enwiki_paragraphs):
    # [[oxymoron]]ic in the wikitext of "Anarchism"
    links = [link for p in enwiki_paragraphs[0]["Anarchism"] for link in p.links if link.target == "Oxymoron"]
    assert [link.anchor for link in links] == ["oxymoronic"]
    # only lowercase ASCII letters trail (MediaWiki's English $linkTrail); entities in anchors are decoded
    (paragraph,) = article_paragraphs("The [[Foo]]Bar, [[bus]]es and [[Café|caf&eacute;]]s.")
    assert paragraph.text == "The FooBar, buses and cafés."
    assert [(link.anchor, link.target) for link in paragraph.links] == [
        ("Foo", "Foo"), ("buses", "Bus"), ("cafés", "Café")
    ]


def test_skipped_sections_are_not_converted(enwiki, enwiki_paragraphs):
    paragraphs = enwiki_paragraphs[0]["Anarchism"]
    # Only the "External links" section of the article mentions these.
    assert enwiki["Anarchism"].text.count("Kate Sharpley Library") == 1
    assert not any("Kate Sharpley" in p.text or "Bryan Caplan" in p.text for p in paragraphs)
    sections = {p.section for p in paragraphs}
    assert {"Etymology and terminology", "Origins", "Mutualism"} <= sections
    assert not sections & {"External links", "References", "Further reading", "See also"}


def test_list_items_are_paragraphs_with_their_section(enwiki_paragraphs):
    paragraphs = enwiki_paragraphs[0]["List of anthropologists"]
    by_text = {p.text: p for p in paragraphs}
    assert by_text["John Adair"].section == "A"
    assert by_text["John Adair"].links == (Link(0, 10, "John Adair (anthropologist)", "John Adair"),)
    assert by_text["Florence Babb"].links == ()  # an unlinked list entry
    assert by_text["Sir Peter Buck"].links[0].target == "Te Rangi Hīroa"


def test_tables_and_image_captions_are_dropped(table_markup):
    paragraphs = article_paragraphs(table_markup["List of Prison Break characters"].text)
    assert paragraphs[0].text == "This is a list of characters in the American television series, Prison Break."
    assert [(link.anchor, link.target) for link in paragraphs[0].links] == [
        ("American", "United States"),
        ("Prison Break", "Prison Break"),
    ]
    everything = " ".join(p.text for p in paragraphs)
    assert "Cast members of" not in everything  # the [[Image:...]] caption, which holds links itself
    assert "colspan" not in everything and "CMain" not in everything
    # "Superlatives" is a table only, and its cell text must not leak
    design = article_paragraphs(table_markup["Academy Award for Best Production Design"].text)
    assert not any("Awards resulted from 39 nominations" in p.text for p in design)
    assert design[0].text.startswith("The Academy Award for Best Production Design recognizes achievement for")


def _oracle_targets(text: str) -> collections.Counter:
    """Article-link targets of the prose, found independently with a full mwparserfromhell parse."""
    hidden_tags = {"ref", "references", "table", "gallery", "math", "timeline", "imagemap", "pre"}
    targets: collections.Counter = collections.Counter()
    skip_level = 0
    for section in mwparserfromhell.parse(text).get_sections(flat=True, include_lead=True):
        headings = section.filter_headings(recursive=False)
        if headings:
            level = headings[0].level
            title = headings[0].title.strip_code().strip().casefold()
            if skip_level and level <= skip_level:
                skip_level = 0
            if not skip_level and title in wt.SKIPPED_SECTIONS:
                skip_level = level
        if skip_level:
            continue
        for link in section.filter_wikilinks():
            ancestors = section.get_ancestors(link)
            if any(isinstance(a, mwparserfromhell.nodes.Template) for a in ancestors):
                continue
            if any(isinstance(a, mwparserfromhell.nodes.Tag) and str(a.tag).lower() in hidden_tags
                   for a in ancestors):
                continue
            if any(isinstance(a, mwparserfromhell.nodes.Wikilink) for a in ancestors):
                continue  # inside an image caption
            shown = link.text.strip_code() if link.text is not None else str(link.title)
            target = link_target(str(link.title))
            if target and shown.strip():
                targets[target] += 1
    return targets


@pytest.mark.parametrize(
    "title", ["Actrius", "Alain Connes", "Animalia (book)", "Agnostida", "Algorithms (journal)", "Aa River",
              "Allan Dwan", "Arithmetic mean"]
)
def test_links_match_a_full_parse(enwiki, enwiki_paragraphs, title):
    ours = collections.Counter(link.target for p in enwiki_paragraphs[0][title] for link in p.links)
    assert ours == _oracle_targets(enwiki[title].text)


def test_wanted_fast_path_converts_only_paragraphs_with_wanted_links(enwiki, enwiki_paragraphs):
    list_page = enwiki_paragraphs[0]["List of anthropologists"]
    anthropologists = {link.target for p in list_page for link in p.links}
    assert len(anthropologists) > 150
    hits = 0
    for title, page in enwiki.items():
        fast = article_paragraphs(page.text, wanted=anthropologists.__contains__)
        full = [p for p in enwiki_paragraphs[0][title] if any(link.target in anthropologists for link in p.links)]
        assert fast == full, title
        hits += len(fast)
    assert hits > 50
    # e.g. the "Anthropology" article names anthropologists the list links to
    anthropology = article_paragraphs(enwiki["Anthropology"].text, wanted=anthropologists.__contains__)
    assert any(link.target == "Franz Boas" for p in anthropology for link in p.links)
    # a wanted link that renders as nothing does not make its paragraph wanted
    drops = collections.Counter()
    kept = article_paragraphs("A [[Franz Boas|]] b.\n\nC [[Franz Boas]] d.", anthropologists.__contains__, drops)
    assert [p.text for p in kept] == ["C Franz Boas d."] and drops == {wt.EMPTY_ANCHOR: 1}


# -- malformed wikitext: counted, never raised ---------------------------------------------------------


@pytest.fixture(scope="module")
def lead(enwiki):
    """The first three prose paragraphs of "Anarchism" as wikitext (refs and all)."""
    text = enwiki["Anarchism"].text
    start = text.index("'''Anarchism''' is a")
    paragraphs = [p for p in text[start:].split("\n\n") if not p.startswith("==")][:3]
    assert all("[[" in p for p in paragraphs)
    return paragraphs


def _convert(wikitext):
    drops = collections.Counter()
    paragraphs = article_paragraphs(wikitext, drops=drops)
    assert_exact(paragraphs)
    return paragraphs, drops


def test_unclosed_template_drops_its_paragraph_only(lead):
    paragraphs, drops = _convert("\n\n".join([lead[0], "{{Infobox broken |name=x\n" + lead[1], lead[2]]))
    clean, _ = _convert("\n\n".join(lead))
    assert drops[wt.UNBALANCED_TEMPLATE] == 1
    assert [p.text for p in paragraphs] == [clean[0].text, clean[2].text]
    assert paragraphs[1].links == clean[2].links


def test_nested_unclosed_template_and_stray_closer(lead):
    paragraphs, drops = _convert("\n\n".join([lead[0] + " d}} e", lead[1] + " {{a|{{b}} c", lead[2]]))
    clean, _ = _convert("\n\n".join(lead))
    assert drops[wt.UNBALANCED_TEMPLATE] == 2
    # the stray '}}' goes; the unclosed template goes up to the end of its paragraph, where scanning resumes
    assert [p.text for p in paragraphs] == [clean[0].text + " d e", clean[1].text, clean[2].text]
    assert paragraphs[2].links == clean[2].links


def test_template_spanning_a_blank_line_is_one_template(lead):
    # as in MediaWiki: a template may hold blank lines (e.g. an infobox), so '{{' closes at the next '}}'
    paragraphs, drops = _convert("\n\n".join([lead[0] + " {{a|x", "y}} " + lead[1]]))
    clean, _ = _convert("\n\n".join(lead))
    assert not drops
    assert [p.text for p in paragraphs] == [clean[0].text + " " + clean[1].text]


def test_unclosed_link_keeps_its_text(lead):
    broken = lead[0].replace("[[political philosophy]]", "[[political philosophy", 1)
    paragraphs, drops = _convert(broken)
    assert drops[wt.UNBALANCED_LINK] == 1
    assert paragraphs[0].text.startswith("Anarchism is a political philosophy that advocates self-governed")
    assert paragraphs[0].links[0].target == "Self-governance"


def test_unclosed_comment_ref_and_table(lead):
    paragraphs, drops = _convert(lead[0] + "\n\n" + lead[1] + " <!-- a comment never closed\n\n" + lead[2])
    assert drops[wt.UNCLOSED_COMMENT] == 1 and len(paragraphs) == 2

    paragraphs, drops = _convert(lead[0] + "\n\n" + lead[1] + "<ref>Woodcock, unclosed")
    assert drops[wt.UNCLOSED_TAG] == 1 and len(paragraphs) == 2
    assert "Woodcock, unclosed" not in paragraphs[1].text

    paragraphs, drops = _convert(lead[0] + "\n{|\n| a cell [[Foo]]\n|-\n| [[Bar]]\n\n" + lead[1])
    assert drops[wt.UNBALANCED_TABLE] == 1
    assert not any(link.target in ("Foo", "Bar") for p in paragraphs for link in p.links)


def test_truncated_articles_never_raise(enwiki):
    """Cut real articles at random points: whatever is left is converted with exact spans."""
    rng = random.Random(20260101)
    titles = sorted(enwiki)
    counted = collections.Counter()
    for _ in range(60):
        text = enwiki[rng.choice(titles)].text
        cut = rng.randrange(len(text))
        paragraphs, drops = _convert(text[:cut] + " " + text[cut + rng.randrange(1, 400):])
        counted.update(drops)
    assert counted  # cutting through templates, links and refs is noticed
