"""A local emulator of the Flinks API (Toolbox instance): see README.md in this folder."""
