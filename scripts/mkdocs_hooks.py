"""mkdocs hooks (mkdocs.yml `hooks:`). Click >= 8.3 gives flags without a default, such as the built-in --help,
the default `Sentinel.UNSET`, which mkdocs-click prints as it is; a flag's real default is off."""


def on_page_content(html: str, **_) -> str:
    return html.replace("<code>Sentinel.UNSET</code>", "<code>False</code>")
