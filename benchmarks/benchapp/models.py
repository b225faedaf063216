from django.db import models


class Item(models.Model):
    """The one table the benchmarks read and write."""

    name = models.CharField(max_length=100)
    value = models.IntegerField()

    class Meta:
        app_label = "benchapp"

    def __str__(self):
        return self.name
