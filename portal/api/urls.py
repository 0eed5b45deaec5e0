app_name = "api"
urlpatterns: list = []  # the management API is being built (see portal/api/views.py)
