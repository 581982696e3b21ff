"""Test support shared by tests/ and bench/: fixtures (the one params builder, synthetic styles and corpora),
a local stand-in for the Hugging Face Hub, and the tiny random VLM builder. It lives outside the library so
that stylemap/ ships no fixtures; bench scripts put the repository root on sys.path to import it."""
