"""One module per tab: each builds its layout (`build(ctx)`) and holds its own handlers."""
