"""Analysis: statistics, plots and the HTML report on how composition moves retrieval."""
