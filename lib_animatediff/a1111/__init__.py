"""A1111 host glue: the only package (besides scripts/) that imports modules.* or gradio."""
