"""The test suite's URLs: the admin (the retry events' pages)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
