"""Checks that travel inside every download script and that the run and `verify` import.

Each module here is standard library only and is also a program (`python -S -c <file> ...`): a
rendered script carries its text, so a script run by hand, on a machine without comfyfixer, applies
exactly the rule the run applies. Keep them free of imports from comfyfixer (a test checks).
"""
