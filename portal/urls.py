
app_name = "portal"
urlpatterns: list = []  # the pages are being built (see portal/views.py)
