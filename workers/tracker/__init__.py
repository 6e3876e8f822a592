"""The order tracker: a faust-streaming view of where every order is (see DESIGN.md, "Where
faust-streaming fits"). It reads the pipeline's topics and never writes to them."""
