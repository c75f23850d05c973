"""Framework bases for Backbone implementations. Each module imports its framework; import them lazily."""
