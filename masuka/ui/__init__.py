"""The Gradio UI: one thin module per tab over the domain packages."""
