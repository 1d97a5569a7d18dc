try:
    from comfyfixer.cli import main
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds: nothing started
    raise SystemExit(130) from None

main()
