"""`distill serve`: the student with its retrieval as an OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from distill.cli.app import RecipeArg, SetOpt, app, load


@app.command()
def serve(
    recipe: RecipeArg,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Answer through this OpenAI-compatible server instead of loading the student "
            "here: openai:MODEL (e.g. vLLM with the adapter loaded; default eval.ft_model).",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="The upstream server's URL, e.g. http://localhost:8000/v1."),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Serve the fine-tuned student with its retrieval: OpenAI's /v1/chat/completions
    (streamed or not) and /v1/models.

    Each request's last user message is searched in the run's index (eval.k chunks),
    put in the prompt the student was trained and evaluated on, and answered by the
    student (llama.cpp in this process by default); the reply's `distill` field maps its
    citations to chunks and documents. Needs `distill run RECIPE` first.
    """
    from distill.errors import UserError
    from distill.redact import redact
    from distill.serve.app import check_port, create_app, require
    from distill.serve.app import serve as run_server
    from distill.serve.assistant import open_assistant

    require()
    check_port(host, port)
    r = load(recipe, set_)
    if base_url and not (upstream or r.eval.ft_model):
        raise UserError(
            "--base-url names the upstream server: give --upstream openai:MODEL too (or set "
            "eval.ft_model), or drop --base-url to answer with the student loaded here"
        )
    options = {"base_url": base_url} if base_url else None
    assistant = open_assistant(r, recipe, upstream, options)
    typer.echo(
        redact(
            f"serving '{r.name}' at http://{host}:{port}/v1 ({assistant.student.description}; "
            f"{assistant.k} chunks a question); Ctrl-C stops it"
        ),
        err=True,
    )
    try:
        run_server(create_app(assistant), host, port)
    finally:
        assistant.student.close()
