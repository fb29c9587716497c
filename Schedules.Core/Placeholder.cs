namespace Schedules.Core; public static class Placeholder {}
